#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests and the end-to-end tests that
# drive the real binary with curl and raw sockets. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
# openssl s_client checks what the TLS listener negotiates (tests/tls.rs); Debian has it by default.
command -v openssl >/dev/null || need_apt+=(openssl)
# tests/package.rs: cargo-deb's dependency scan (dpkg-shlibdeps), the unit's check and its
# syscall groups (systemd-analyze), the packaged man page rendered (man).
command -v dpkg-shlibdeps >/dev/null || need_apt+=(dpkg-dev)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v man >/dev/null || need_apt+=(man-db)
# tests/top.rs runs `ringproxy top` in a tmux pane and captures its screen.
command -v tmux >/dev/null || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# tests/metrics.rs reads /metrics with Prometheus' own Python parser (prometheus_client).
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
  echo "test.sh: installing prometheus-client (pip)"
  command -v pip3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip; }
  pip3 install -q prometheus-client 2>/dev/null || pip3 install -q --break-system-packages prometheus-client
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
