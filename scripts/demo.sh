#!/usr/bin/env bash
# Runs ringproxy on 127.0.0.1:8080 in front of three demo backends (127.0.0.1:9001-9003).
# Try:  curl -s localhost:8080/   (repeat: round robin)   ·   Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

upstreams=()
for i in 1 2 3; do
  port=$((9000 + i))
  python3 scripts/demo_backend.py "$port" "backend-$i" &
  pids+=($!)
  upstreams+=(--upstream "127.0.0.1:$port")
done

echo "demo: backends on 127.0.0.1:9001-9003; proxy on http://127.0.0.1:8080 (Ctrl-C to stop)"
echo "demo: try  curl -s http://127.0.0.1:8080/  or  curl -s --data-binary hi http://127.0.0.1:8080/echo"
./target/release/ringproxy --listen 127.0.0.1:8080 "${upstreams[@]}" "$@" &
pids+=($!)
wait -n
