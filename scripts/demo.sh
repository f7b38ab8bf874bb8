#!/usr/bin/env bash
# Runs ringproxy on 127.0.0.1:8080 in front of three demo backends (127.0.0.1:9001-9003), to
# try round robin and failover by hand:
#   curl -s http://127.0.0.1:8080/    (repeat it: round robin over the backends)
#   kill PID                          (a backend's pid, printed at start: the others keep serving)
# The demo stops on Ctrl-C or when the proxy exits, and stops every process it started.
# Arguments are passed on to ringproxy (e.g. --workers 1).
#
# Environment:
#   RINGPROXY_BIN       run this ringproxy binary instead of building target/release/ringproxy
#   DEMO_PORT           the proxy's port (default 8080)
#   DEMO_BACKEND_PORTS  the backends' ports, space-separated (default "9001 9002 9003")
set -euo pipefail

proxy_bin=${RINGPROXY_BIN:-}
# A relative path is relative to where the demo was started, not to the repository.
if [[ $proxy_bin == */* && $proxy_bin != /* ]]; then
  proxy_bin=$PWD/$proxy_bin
fi
cd "$(dirname "$0")/.."

proxy_port=${DEMO_PORT:-8080}
read -r -a backend_ports <<<"${DEMO_BACKEND_PORTS:-9001 9002 9003}"
if [[ ${#backend_ports[@]} -eq 0 ]]; then
  echo "demo: DEMO_BACKEND_PORTS lists no port" >&2
  exit 2
fi
for port in "$proxy_port" "${backend_ports[@]}"; do
  if [[ ! $port =~ ^[0-9]+$ ]]; then
    echo "demo: not a port: '$port'" >&2
    exit 2
  fi
done

if [[ -z $proxy_bin ]]; then
  cargo build --release
  proxy_bin=./target/release/ringproxy
fi

proxy_pid=""
declare -A backend_label=() # pid -> how messages name that backend
caught=""

# "status 1", or "status 137, SIGKILL" for a process ended by a signal (which bash reports as
# 128 + the signal's number).
describe() {
  local signal
  if (($1 > 128)) && signal=$(kill -l "$(($1 - 128))" 2>/dev/null); then
    echo "status $1, SIG$signal"
  else
    echo "status $1"
  fi
}

# Waits until none of the pids runs any more, or at most $1 tenths of a second (0: no limit,
# 1 is returned at the limit). Polls rather than `wait`s: when a trap interrupts `wait -n` just
# as a child exits, bash can lose track of that child, and a `wait` for it then never returns.
# `kill -0` fails once bash has reaped a child, so nothing is left as a zombie either.
wait_gone() {
  local limit=$1 tenths=0 pid
  shift
  for pid; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((limit > 0 && tenths >= limit)); then
        return 1
      fi
      sleep 0.1
      tenths=$((tenths + 1))
    done
  done
}

cleanup() {
  # From here a signal only hurries the proxy (it receives Ctrl-C itself); the backends must
  # still be stopped after it.
  trap '' INT TERM
  if [[ -n $proxy_pid ]]; then
    # A Ctrl-C reached the proxy too (the terminal signals the whole process group), so it is
    # already draining; another signal would end the drain early. It gets a moment alone.
    if [[ $caught != INT ]] || ! wait_gone 20 "$proxy_pid"; then
      kill -TERM "$proxy_pid" 2>/dev/null || true
      wait_gone 0 "$proxy_pid"
    fi
  fi
  # Stopped after the proxy so that requests it drains can still reach them.
  local pids=("${!backend_label[@]}")
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone 0 "${pids[@]}"
  fi
}
trap cleanup EXIT
trap 'caught=INT; exit 130' INT
trap 'caught=TERM; exit 143' TERM

upstreams=()
for i in "${!backend_ports[@]}"; do
  port=${backend_ports[i]}
  name=backend-$((i + 1))
  python3 scripts/demo_backend.py "$port" "$name" &
  backend_label[$!]="$name (127.0.0.1:$port, pid $!)"
  echo "demo: ${backend_label[$!]} started"
  upstreams+=(--upstream "127.0.0.1:$port")
done

"$proxy_bin" --listen "127.0.0.1:$proxy_port" "${upstreams[@]}" "$@" &
proxy_pid=$!
url=http://127.0.0.1:$proxy_port
echo "demo: proxy on $url (pid $proxy_pid); Ctrl-C stops everything"
echo "demo: try  curl -s $url/  (repeat it)  or  curl -s --data-binary hi $url/echo"
echo "demo: then stop a backend (kill PID) and see the others keep serving"

while :; do
  # Returns when any child exits (or on a trapped signal); which one is found below. Bash's
  # own note on a child ended by a signal ("... Killed  python3 ...") is left out of the
  # output: the messages below say the same with the backend's name.
  wait -n 2>/dev/null || true
  for pid in "${!backend_label[@]}"; do
    kill -0 "$pid" 2>/dev/null && continue
    status=0
    wait "$pid" 2>/dev/null || status=$?
    label=${backend_label[$pid]}
    unset "backend_label[$pid]"
    if [[ ${#backend_label[@]} -gt 0 ]]; then
      echo "demo: $label exited ($(describe "$status")); the proxy keeps serving from the others"
    else
      echo "demo: $label exited ($(describe "$status")); no backend left, the proxy answers 503"
    fi
  done
  if ! kill -0 "$proxy_pid" 2>/dev/null; then
    status=0
    wait "$proxy_pid" 2>/dev/null || status=$?
    echo "demo: the proxy (pid $proxy_pid) exited ($(describe "$status")); stopping the backends"
    proxy_pid=""
    exit "$status"
  fi
done
