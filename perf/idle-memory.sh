#!/usr/bin/env bash
# Memory held by idle keep-alive connections, and given back after they close: for each
# ringproxy binary named (and nginx beside them), one worker pinned to the proxy core in
# front of the bench's static backend, N clients (perf/idle_clients.py) each make one request
# and then stay connected and silent.
#
#   perf/idle-memory.sh [--connections N] [--hold S] [--settle S] [--no-nginx] [--out FILE]
#                       [BIN...]
#
# Without BIN, builds this repository's release binary. Per proxy it prints the RSS at start
# (after one request), with the N connections held idle (measured --hold seconds, default
# 10, after the last one got its answer: what the burst of requests borrowed has been
# handed back by then), and --settle seconds (default 60) after they all closed: the
# increase per idle connection, and the after-burst RSS against the start. RSS is VmRSS
# from /proc: ringproxy's process, nginx's worker (its master serves no connection).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=scripts/lib/bench-common.sh
source "$SCRIPT_DIR/../scripts/lib/bench-common.sh"

CONNECTIONS=10000 HOLD=10 SETTLE=60 NGINX=1 OUT="" PROXY_CPU=0 LOAD_CPU=1 BASE_PORT=19380
BINS=()
while (($#)); do
    case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --hold) HOLD=${2%s}; shift 2 ;;
    --settle) SETTLE=${2%s}; shift 2 ;;
    --no-nginx) NGINX=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n 2,15p "$0"; exit 0 ;;
    -*) bench_die "unknown option $1" ;;
    *) BINS+=("$1"); shift ;;
    esac
done

# Each client connection is one descriptor in the client and one in the proxy, which also
# holds backend connections (at most a batch of clients is waiting for an answer at a time).
fds=$((CONNECTIONS + 1024))
ulimit -n "$fds" 2>/dev/null ||
    bench_die "cannot raise the open file limit to $fds (hard limit $(ulimit -Hn)); run as root"
# shellcheck disable=SC2034 # read by bench_nginx_main_settings
BENCH_NGINX_CONNECTIONS=$fds

bench_install_traps
bench_make_workdir
bench_ensure_commands nginx:nginx curl:curl python3:python3
if ((${#BINS[@]} == 0)); then BINS+=("$(bench_build_ringproxy "$REPO_DIR")"); fi
bench_start_backend "$BASE_PORT" "$LOAD_CPU"
proxy_port=$((BASE_PORT + 1))

rss_kib() { # pids...
    local pid total=0 kib
    for pid in "$@"; do
        kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) ||
            bench_die "process $pid exited"
        total=$((total + kib))
    done
    echo "$total"
}

# Holds CONNECTIONS idle clients on the proxy at proxy_port, then closes them; sets
# rss_start, rss_held and rss_after (KiB) for the processes named.
measure() { # name pids...
    local name=$1 client_pid log="$BENCH_WORKDIR/clients-$1.log"
    shift
    curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$proxy_port/12b" || bench_die "$name does not answer"
    sleep 1
    rss_start=$(rss_kib "$@")
    taskset -c "$LOAD_CPU" python3 "$SCRIPT_DIR/idle_clients.py" --port "$proxy_port" \
        --count "$CONNECTIONS" >"$log" 2>&1 &
    client_pid=$!
    BENCH_PIDS+=("$client_pid")
    bench_wait_for_log_line "^held " "idle clients ($name)" "$client_pid" "$log" 300
    sleep "$HOLD"
    rss_held=$(rss_kib "$@")
    bench_log "$name: $CONNECTIONS idle connections held; closing them, then ${SETTLE}s"
    bench_stop_pids "$client_pid"
    sleep "$SETTLE"
    rss_after=$(rss_kib "$@")
    curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$proxy_port/12b" ||
        bench_die "$name does not answer after the burst"
}

rows=()
add_row() { # name
    rows+=("$(awk -v name="$1" -v s="$rss_start" -v h="$rss_held" -v a="$rss_after" -v n="$CONNECTIONS" 'BEGIN {
        printf "| %s | %.1f | %.1f | %.2f | %.1f | %.2f |", name, s / 1024, h / 1024,
            (h - s) / n, a / 1024, a / s }')")
}

for bin in "${BINS[@]}"; do
    RINGPROXY_BIN=$bin
    bench_start_proxy_ringproxy "$proxy_port" "$BASE_PORT" "$PROXY_CPU" 1
    measure ringproxy "$BENCH_PROXY_PID"
    add_row "ringproxy $(basename "$bin")"
    bench_stop_pids "$BENCH_PROXY_PID"
done
if ((NGINX)); then
    bench_start_proxy_nginx "$proxy_port" "$BASE_PORT" "$PROXY_CPU" 1 256
    # shellcheck disable=SC2086 # one pid per worker
    measure nginx $BENCH_PROXY_CPU_PIDS
    add_row nginx
    bench_stop_pids "$BENCH_PROXY_PID"
fi

report() {
    echo "### Idle keep-alive connections: $CONNECTIONS, one request each ($(date -u +%F), $(bench_git_describe "$REPO_DIR"))"
    echo
    echo "\`perf/idle-memory.sh --connections $CONNECTIONS --hold $HOLD --settle $SETTLE\`; one worker on cpu $PROXY_CPU, clients and backend on cpu $LOAD_CPU."
    echo
    echo "| proxy | RSS start (MiB) | RSS held (MiB) | KiB per idle connection | RSS ${SETTLE} s after close (MiB) | after / start |"
    echo "| --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
}
report
if [[ -n $OUT ]]; then report >>"$OUT"; fi
