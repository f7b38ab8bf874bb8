#!/usr/bin/env bash
# Where each proxy's CPU time per request goes: user space, the kernel's TCP sends and
# receives, and the event machinery around them (io_uring, or epoll and system calls).
# Runs the proxies one after another as scripts/bench.sh does (one worker pinned to the proxy
# core, the backend and wrk on the load core), records the proxy core with `perf record -g`
# during each run, and splits the proxy's exact CPU time per request (/proc) by the share of
# its samples in each part.
#
#   perf/breakdown.sh [--connections N] [--body 12b|1k|64k] [--duration S]
#                     [--only LIST] [--ringproxy-bin PATH]
#
# --only takes proxies from ringproxy,nginx,haproxy (default ringproxy,nginx). One run per
# proxy: repeat it before trusting a difference of a few percent.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/bench-common.sh
source "$PERF_DIR/../scripts/lib/bench-common.sh"

CONNECTIONS=50 BODY=12b DURATION=6 ONLY=ringproxy,nginx PROXY_CPU=0 LOAD_CPU=1 BASE_PORT=19380
RINGPROXY_BIN=""
while (($#)); do
    case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --body) BODY=$2; shift 2 ;;
    --duration) DURATION=${2%s}; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --ringproxy-bin) RINGPROXY_BIN=$2; shift 2 ;;
    -h | --help) sed -n 2,14p "$0"; exit 0 ;;
    *) bench_die "unknown argument $1" ;;
    esac
done

bench_install_traps
bench_make_workdir
bench_ensure_commands wrk:wrk nginx:nginx perf:linux-perf python3:python3
[[ ,$ONLY, == *,haproxy,* ]] && bench_ensure_commands haproxy:haproxy
if [[ ,$ONLY, == *,ringproxy,* && -z $RINGPROXY_BIN ]]; then
    RINGPROXY_BIN=$(bench_build_ringproxy "$PERF_DIR/..")
fi
bench_write_wrk_scripts
bench_start_backend "$BASE_PORT" "$LOAD_CPU"

proxy_port=$((BASE_PORT + 1))
columns=()
IFS=, read -ra proxies <<<"$ONLY"
for proxy in "${proxies[@]}"; do
    case $proxy in
    ringproxy) bench_start_proxy_ringproxy "$proxy_port" "$BASE_PORT" "$PROXY_CPU" 1 ;;
    nginx) bench_start_proxy_nginx "$proxy_port" "$BASE_PORT" "$PROXY_CPU" 1 "$((CONNECTIONS * 2))" ;;
    haproxy) bench_start_proxy_haproxy "$proxy_port" "$BASE_PORT" "$PROXY_CPU" 1 ;;
    *) bench_die "unknown proxy $proxy (from ringproxy,nginx,haproxy)" ;;
    esac
    url="http://127.0.0.1:$proxy_port/$BODY"
    bench_wrk "$LOAD_CPU" 1 "$CONNECTIONS" 2 ka "$url" "$BENCH_WORKDIR/warmup.txt"
    read -r ticks0 _ <<<"$(bench_cpu_ticks "$BENCH_PROXY_CPU_PIDS")"
    bench_wrk_start "$LOAD_CPU" 1 "$CONNECTIONS" "$((DURATION + 2))" ka "$url" "$BENCH_WORKDIR/$proxy.txt"
    sleep 1
    perf record -q -C "$PROXY_CPU" -g -F 999 -o "$BENCH_WORKDIR/$proxy.data" -- sleep "$DURATION" \
        >/dev/null 2>&1 || bench_die "perf record failed (run as root?)"
    bench_wrk_wait
    read -r ticks1 _ <<<"$(bench_cpu_ticks "$BENCH_PROXY_CPU_PIDS")"
    read -r rps requests _ <<<"$(bench_parse_wrk "$BENCH_WORKDIR/$proxy.txt")"
    ((requests > 0)) || bench_die "$proxy served no requests"
    us=$(bench_us_per_request $((ticks1 - ticks0)) "$requests")
    bench_log "$proxy: $rps req/s, $us µs CPU/request"
    perf script -i "$BENCH_WORKDIR/$proxy.data" -F comm,tid,ip,sym >"$BENCH_WORKDIR/$proxy.script" 2>/dev/null
    columns+=("$proxy=$us=$BENCH_WORKDIR/$proxy.script")
    bench_stop_pids "$BENCH_PROXY_PID"
done

echo "keep-alive, $CONNECTIONS connections, GET $BODY, one worker on cpu $PROXY_CPU"
echo
python3 "$PERF_DIR/breakdown.py" "${columns[@]}"
