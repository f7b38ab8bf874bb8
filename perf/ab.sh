#!/usr/bin/env bash
# A/B of ringproxy builds: the same static backend, each binary in turn (interleaved per
# repetition), one worker pinned to the proxy core, wrk on the load core. Prints one line per
# run: req/s, CPU µs per request (and its user-space part), context switches per request,
# p99. For judging one change in isolation; scripts/bench.sh is the comparison with nginx
# and HAProxy.
#
# --together runs two binaries at the same time instead, both on the proxy core, each with
# its own wrk, and prints their ratio B/A per repetition: a burst of outside load hits both
# alike, so it tells a few percent apart when runs in turn spread too much. It measures a
# saturated core shared by two processes, though: a change that pays only when the loop
# idles (wake-ups, batching) is judged in turn.
#
#   perf/ab.sh [--connections N] [--body 12b|1k|64k] [--reps N] [--duration S] [--together]
#              BIN_A BIN_B ...
#
# A BIN may be a wrapper script that sets environment variables and execs the binary.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/bench-common.sh
source "$SCRIPT_DIR/../scripts/lib/bench-common.sh"

CONNECTIONS=50 BODY=12b REPS=3 DURATION=5 PROXY_CPU=0 LOAD_CPU=1 BASE_PORT=19080 TOGETHER=0
BINS=()
while (($#)); do
    case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --body) BODY=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --duration) DURATION=${2%s}; shift 2 ;;
    --together) TOGETHER=1; shift ;;
    -h | --help) sed -n 2,17p "$0"; exit 0 ;;
    -*) bench_die "unknown option $1" ;;
    *) BINS+=("$1"); shift ;;
    esac
done
((${#BINS[@]})) || bench_die "name at least one ringproxy binary"
((!TOGETHER || ${#BINS[@]} == 2)) || bench_die "--together takes two binaries, A and B"

# Sum of voluntary and involuntary context switches over all threads of a process.
context_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'
}

# Each binary in turn, a fresh proxy per run.
run_in_turn() {
    local proxy_port=$((BASE_PORT + 1)) rep bin
    local url="http://127.0.0.1:$proxy_port/$BODY"
    for rep in $(seq 1 "$REPS"); do
        for bin in "${BINS[@]}"; do
            RINGPROXY_BIN=$bin
            bench_start_proxy_ringproxy "$proxy_port" "$BASE_PORT" "$PROXY_CPU" 1
            bench_wrk "$LOAD_CPU" 1 "$CONNECTIONS" 1 ka "$url" "$BENCH_WORKDIR/warmup.txt"
            read -r ticks0 user0 <<<"$(bench_cpu_ticks "$BENCH_PROXY_CPU_PIDS")"
            switches0=$(context_switches "$BENCH_PROXY_PID")
            bench_wrk "$LOAD_CPU" 1 "$CONNECTIONS" "$DURATION" ka "$url" "$BENCH_WORKDIR/run.txt"
            read -r ticks1 user1 <<<"$(bench_cpu_ticks "$BENCH_PROXY_CPU_PIDS")"
            switches1=$(context_switches "$BENCH_PROXY_PID")
            read -r rps requests _ p99 _ <<<"$(bench_parse_wrk "$BENCH_WORKDIR/run.txt")"
            awk -v name="$(basename "$bin")" -v rep="$rep" -v rps="$rps" -v n="$requests" \
                -v t=$((ticks1 - ticks0)) -v u=$((user1 - user0)) -v hz="$(getconf CLK_TCK)" -v cs=$((switches1 - switches0)) \
                -v p99="$p99" 'BEGIN {
                    printf "%s rep %d: %.0f req/s, %.2f us CPU/req (%.2f user), %.3f switches/req, p99 %s us\n",
                        name, rep, rps, t * 1e6 / hz / n, u * 1e6 / hz / n, cs / n, p99 }'
            bench_stop_pids "$BENCH_PROXY_PID"
        done
    done
}

# Both binaries at once, kept running across repetitions.
run_together() {
    local pids=() ports=() i rep
    for i in 0 1; do
        ports+=($((BASE_PORT + 1 + i)))
        RINGPROXY_BIN=${BINS[i]}
        bench_start_proxy_ringproxy "${ports[i]}" "$BASE_PORT" "$PROXY_CPU" 1
        mv "$BENCH_WORKDIR/ringproxy" "$BENCH_WORKDIR/ringproxy-$i" # keep each one's logs
        pids+=("$BENCH_PROXY_PID")
    done
    for rep in $(seq 1 "$REPS"); do
        local ticks0=() wrks=() us=() line="rep $rep:" t requests
        for i in 0 1; do
            read -r t _ <<<"$(bench_cpu_ticks "${pids[i]}")"
            ticks0+=("$t")
        done
        for i in 0 1; do
            bench_wrk_start "$LOAD_CPU" 1 "$CONNECTIONS" "$DURATION" ka \
                "http://127.0.0.1:${ports[i]}/$BODY" "$BENCH_WORKDIR/run-$i.txt"
            wrks+=("$BENCH_WRK_PID")
        done
        for i in 0 1; do bench_wrk_wait "${wrks[i]}"; done
        for i in 0 1; do
            read -r t _ <<<"$(bench_cpu_ticks "${pids[i]}")"
            read -r _ requests _ <<<"$(bench_parse_wrk "$BENCH_WORKDIR/run-$i.txt")"
            ((requests > 0)) || bench_die "$(basename "${BINS[i]}") served no requests"
            us+=("$(bench_us_per_request $((t - ticks0[i])) "$requests")")
            line+=" $(basename "${BINS[i]}") ${us[i]} us CPU/req ($requests requests)"
        done
        echo "$line, B/A $(awk -v a="${us[0]}" -v b="${us[1]}" 'BEGIN { printf "%.3f", b / a }')"
    done
}

bench_install_traps
bench_make_workdir
bench_ensure_commands wrk:wrk nginx:nginx
bench_write_wrk_scripts
bench_start_backend "$BASE_PORT" "$LOAD_CPU"
if ((TOGETHER)); then
    run_together
else
    run_in_turn
fi
