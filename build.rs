//! Tells `--version` which commit the binary was built from: `RINGPROXY_GIT_COMMIT` is the
//! short hash, `-dirty` when tracked files had changes, or `unknown` when there is no git or
//! no checkout (a crate tarball). Nothing here may fail the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = commit(&dir).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RINGPROXY_GIT_COMMIT={commit}");
}

fn commit(dir: &Path) -> Option<String> {
    // A tarball unpacked inside some other repository must not take that repository's commit.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    watch_head(dir);
    let hash = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let changes = git(dir, &["status", "--porcelain", "--untracked-files=no"])?;
    Some(if changes.is_empty() {
        hash
    } else {
        format!("{hash}-dirty")
    })
}

/// Reruns this script when HEAD moves: a commit moves the branch's ref, a checkout moves
/// HEAD, `git pack-refs` moves the ref into packed-refs. `--git-path` finds them in a
/// worktree too, where `.git` is a file. Edits to the sources rebuild the crate anyway, so
/// they rerun it for the `-dirty` mark; a path that does not exist is not named, as cargo
/// would then rerun the script on every build.
fn watch_head(dir: &Path) {
    let branch = git(dir, &["symbolic-ref", "-q", "HEAD"]);
    let refs = ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_owned)
        .chain(branch);
    let git_paths = refs.filter_map(|name| {
        git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", &name],
        )
    });
    let sources = ["src", "Cargo.toml", "Cargo.lock"].map(|p| dir.join(p).display().to_string());
    for path in git_paths.chain(sources) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// `git ARGS` in `dir`, its trimmed output if it succeeded. Optional locks are off so that
/// `git status` never rewrites the index (which would look like a change to cargo).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8(output.stdout).ok()?.trim().to_owned())
}
