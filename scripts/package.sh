#!/usr/bin/env bash
# Builds the Debian package: the release binary, the man page and shell completions that
# binary generates, then `cargo deb` (installed first when missing). Prints the .deb's path
# as the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
  echo "package.sh: installing cargo-deb" >&2
  cargo install cargo-deb --locked
fi

cargo build --release --locked
target=$(cargo metadata --no-deps --format-version 1 | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
bin="$target/release/ringproxy"
# Cargo.toml's [package.metadata.deb] assets take these from target/release/package/.
assets="$target/release/package"
mkdir -p "$assets"
"$bin" manpage | gzip -9n >"$assets/ringproxy.1.gz"
"$bin" completions bash >"$assets/ringproxy.bash"
"$bin" completions zsh >"$assets/_ringproxy"
"$bin" completions fish >"$assets/ringproxy.fish"

cargo deb --no-build
