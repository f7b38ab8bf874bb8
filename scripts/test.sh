#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests and the end-to-end tests that
# drive the real binary with curl and raw sockets. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
# tests/package.rs: cargo-deb's dependency scan (dpkg-shlibdeps), the unit's check and its
# syscall groups (systemd-analyze), the packaged man page rendered (man).
command -v dpkg-shlibdeps >/dev/null || need_apt+=(dpkg-dev)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v man >/dev/null || need_apt+=(man-db)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
