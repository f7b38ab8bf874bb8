#!/usr/bin/env bash
# A backend that hangs: round robin over three demo backends, 20 keep-alive wrk clients; one
# backend is stopped with SIGSTOP (the kernel still accepts its connections and buffers
# requests, the process never answers) right after a warm-up left pooled connections to it.
# Prints req/s and errors:
#   - baseline: the two healthy backends alone, for DURATION seconds;
#   - the first 2 s after the hang (wrk started at the moment of the SIGSTOP);
#   - from 2 s after the hang on, for DURATION seconds;
# and the ratio of the last to the baseline.
#
#   perf/hung-backend.sh [--bin PATH] [--duration S] [--connections N] [--reps N]
#
# The two setups alternate REPS times (default 3); the report is a table per repetition and the
# median ratio.
#
# Needs wrk (installed with apt when missing) and python3. The backends are
# scripts/demo_backend.py, so the backends, not the proxy, bound the throughput: the ratio
# says how much of the healthy backends' capacity is left once one hangs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench-common.sh
source scripts/lib/bench-common.sh

bin=target/release/ringproxy
duration=8
connections=20
reps=3
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    *) bench_die "unknown argument $1 (see the header of $0)" ;;
  esac
done

bench_ensure_commands wrk
[ -x "$bin" ] || bin=$(bench_build_ringproxy .)
bench_install_traps
bench_make_workdir
work=$BENCH_WORKDIR

ports=(19301 19302 19303)
proxy_port=19300
for port in "${ports[@]}" "$proxy_port"; do bench_require_free_port "$port" "hung-backend"; done

start_backends() { # count
  backend_pids=()
  for ((i = 0; i < $1; i++)); do
    python3 scripts/demo_backend.py "${ports[$i]}" "backend-$((i + 1))" \
      >"$work/backend-$i.log" 2>&1 &
    backend_pids+=($!)
    BENCH_PIDS+=($!)
    bench_wait_for_port "${ports[$i]}" "backend-$((i + 1))" "$!" "$work/backend-$i.log"
  done
}

start_proxy() { # count
  local upstreams=()
  for ((i = 0; i < $1; i++)); do upstreams+=(--upstream "127.0.0.1:${ports[$i]}"); done
  # The previous run's "ready" must not be mistaken for this one's.
  rm -f "$work/proxy.log"
  "$bin" --listen "127.0.0.1:$proxy_port" "${upstreams[@]}" --workers 1 --no-pin \
    >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  BENCH_PIDS+=("$proxy_pid")
  bench_wait_for_log_line "ready" ringproxy "$proxy_pid" "$work/proxy.log"
}

stop_all() {
  kill -CONT "${backend_pids[@]}" 2>/dev/null || true
  bench_stop_pids "$proxy_pid" "${backend_pids[@]}"
}

# wrk's summary as "req/s errors".
measure() { # seconds
  local out
  out=$(wrk -t 2 -c "$connections" -d "${1}s" --timeout 30s "http://127.0.0.1:$proxy_port/")
  local rps errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {n++} END {print n+0}' <<<"$out")
  [ "$errors" = 0 ] || errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')
  echo "$rps $errors"
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "| rep | two healthy alone, req/s | first 2 s after the hang | from 2 s after the hang | after / alone | errors | ejection logged |"
echo "|---|---|---|---|---|---|---|"
ratios=()
for ((rep = 1; rep <= reps; rep++)); do
  bench_log "rep $rep: the two healthy backends alone"
  start_backends 2
  start_proxy 2
  measure 1 >/dev/null
  read -r base_rps base_errors < <(measure "$duration")
  stop_all

  bench_log "rep $rep: three backends; backend-3 stops after a warm-up"
  start_backends 3
  start_proxy 3
  measure 1 >/dev/null
  kill -STOP "${backend_pids[2]}"
  read -r first_rps first_errors < <(measure 2)
  read -r after_rps after_errors < <(measure "$duration")
  stop_all

  ratio=$(awk -v a="$after_rps" -v b="$base_rps" 'BEGIN {printf "%.2f", a / b}')
  ratios+=("$ratio")
  logged=$(grep -c "stalled" "$work/proxy.log" || true)
  echo "| $rep | $base_rps | $first_rps | $after_rps | $ratio | $base_errors / $first_errors / $after_errors | $logged |"
done
echo
echo "median after / alone: $(printf '%s\n' "${ratios[@]}" | median)"
echo "last proxy log:"
grep -E "stalled|ejected" "$work/proxy.log" || echo "(no ejection logged)"
