//! The runtime comes from crates.io as released: no patched or vendored copy.

use std::process::Command;

#[test]
fn monoio_is_the_crates_io_release_and_nothing_is_patched() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-i",
            "monoio",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(root)
        .output()
        .expect("cargo runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let monoio = tree.lines().next().unwrap_or_default();
    assert!(monoio.starts_with("monoio v0.2."), "{tree}");
    assert!(
        !monoio.contains('('),
        "monoio from a path or git source, not crates.io: {monoio}"
    );
    let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).expect("Cargo.toml");
    assert!(
        !manifest.contains("[patch"),
        "Cargo.toml patches a dependency"
    );
    assert!(
        !std::path::Path::new(root).join("vendor").exists(),
        "a vendor/ directory is back"
    );
}
