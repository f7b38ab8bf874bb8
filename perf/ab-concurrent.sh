#!/usr/bin/env bash
# A/B of two ringproxy builds run at the same time: both pinned to the proxy core, each
# loaded by its own wrk on the load core, so that a burst of outside load or a slow minute
# of the VM hits both alike. Prints each build's CPU µs per request and the ratio B/A per
# repetition. It tells differences of a few percent apart where perf/ab.sh (one build at a
# time) cannot on a noisy VM, but it measures a saturated proxy core shared by two
# processes: a change that pays only when the loop idles (wake-ups, batching) is judged
# with perf/ab.sh instead.
#
#   perf/ab-concurrent.sh [--connections N] [--body 12b|1k|64k] [--reps N] [--duration S]
#                         BIN_A BIN_B
#
# A BIN may be a wrapper script that sets environment variables and execs the binary.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/bench-common.sh
source "$PERF_DIR/../scripts/lib/bench-common.sh"

CONNECTIONS=50 BODY=12b REPS=5 DURATION=5 PROXY_CPU=0 LOAD_CPU=1 BASE_PORT=19480
BINS=()
while (($#)); do
    case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --body) BODY=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --duration) DURATION=${2%s}; shift 2 ;;
    -h | --help) sed -n 2,14p "$0"; exit 0 ;;
    -*) bench_die "unknown option $1" ;;
    *) BINS+=("$1"); shift ;;
    esac
done
((${#BINS[@]} == 2)) || bench_die "name two ringproxy binaries, A and B"

bench_install_traps
bench_make_workdir
bench_ensure_commands wrk:wrk nginx:nginx
bench_write_wrk_scripts
bench_start_backend "$BASE_PORT" "$LOAD_CPU"

pids=() ports=()
for i in 0 1; do
    port=$((BASE_PORT + 1 + i))
    RINGPROXY_BIN=${BINS[i]}
    bench_start_proxy_ringproxy "$port" "$BASE_PORT" "$PROXY_CPU" 1
    # Each proxy keeps its own log directory.
    mv "$BENCH_WORKDIR/ringproxy" "$BENCH_WORKDIR/ringproxy-$i"
    pids+=("$BENCH_PROXY_PID") ports+=("$port")
done

hz=$(getconf CLK_TCK)
for rep in $(seq 1 "$REPS"); do
    ticks0=() wrks=()
    for i in 0 1; do
        read -r t _ <<<"$(bench_cpu_ticks "${pids[i]}")"
        ticks0+=("$t")
    done
    for i in 0 1; do
        taskset -c "$LOAD_CPU" wrk -t 1 -c "$CONNECTIONS" -d "${DURATION}s" --latency \
            -s "$BENCH_WORKDIR/wrk-get.lua" "http://127.0.0.1:${ports[i]}/$BODY" \
            >"$BENCH_WORKDIR/run-$i.txt" 2>&1 &
        wrks+=($!)
    done
    wait "${wrks[@]}" || bench_die "wrk failed (see $BENCH_WORKDIR/run-*.txt)"
    line="rep $rep:"
    for i in 0 1; do
        read -r t _ <<<"$(bench_cpu_ticks "${pids[i]}")"
        read -r _ requests _ <<<"$(bench_parse_wrk "$BENCH_WORKDIR/run-$i.txt")"
        ((requests > 0)) || bench_die "$(basename "${BINS[i]}") served no requests"
        us[i]=$(awk -v t=$((t - ticks0[i])) -v n="$requests" -v hz="$hz" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
        line+=" $(basename "${BINS[i]}") ${us[i]} µs/req ($requests req)"
    done
    echo "$line, B/A $(awk -v a="${us[0]}" -v b="${us[1]}" 'BEGIN { printf "%.3f", b / a }')"
done
