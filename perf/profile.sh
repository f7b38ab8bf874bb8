#!/usr/bin/env bash
# Profiles ringproxy under wrk load: perf record (software cpu-clock: this VM has no
# hardware counters), a flame graph SVG via inferno, and the top symbols.
# Same backend and pinning as scripts/bench.sh. See perf/README.md.
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$PERF_DIR/.." && pwd)
# shellcheck source=scripts/lib/bench-common.sh
source "$REPO_DIR/scripts/lib/bench-common.sh"

usage() {
    cat <<'EOF'
Usage: perf/profile.sh [options]

  --duration S          seconds of perf recording under load (default 15)
  --connections N       wrk connections (default 50)
  --body 12b|1k|64k|post  what to request (post = 16 KiB POST) (default 12b)
  --close               send Connection: close
  --tls                 over HTTPS (ECDSA P-256, TLS 1.3); with --close every request is a
                        resumed handshake (wrk reconnects with its last session ticket)
  --workers N           ringproxy workers (default 1)
  --proxy-cpus LIST     ringproxy cores (default 0)
  --load-cpus LIST      backend + wrk cores (default 1)
  --call-graph fp|dwarf fp (default) rebuilds ringproxy with frame pointers into a
                        separate target dir; dwarf unwinds the normal release build
  --frequency HZ        samples per second (default 999)
  --repo DIR            ringproxy source (default: this repository)
  --ringproxy-bin PATH  profile this binary instead of building
  --base-port N         backend port; ringproxy uses N+1 (default 18180)
  --keep                keep the work dir (perf.data, configs, logs)
EOF
}

DURATION=15 CONNECTIONS=50 BODY=12b MODE=ka WORKERS=1 PROXY_CPUS=0 LOAD_CPUS=1
CALL_GRAPH=fp FREQUENCY=999 REPO="$REPO_DIR" RINGPROXY_BIN="" BASE_PORT=18180 TLS=0

parse_args() {
    while (($#)); do
        case $1 in
        -h | --help) usage; exit 0 ;;
        --keep) BENCH_KEEP_WORKDIR=1; shift; continue ;;
        --close) MODE=close; shift; continue ;;
        --tls) TLS=1; shift; continue ;;
        esac
        (($# > 1)) || bench_die "$1 needs a value (see --help)"
        case $1 in
        --duration) DURATION=${2%s} ;;
        --connections) CONNECTIONS=$2 ;;
        --body) BODY=$2 ;;
        --workers) WORKERS=$2 ;;
        --proxy-cpus) PROXY_CPUS=$2 ;;
        --load-cpus) LOAD_CPUS=$2 ;;
        --call-graph) CALL_GRAPH=$2 ;;
        --frequency) FREQUENCY=$2 ;;
        --repo) REPO=$2 ;;
        --ringproxy-bin) RINGPROXY_BIN=$2 ;;
        --base-port) BASE_PORT=$2 ;;
        *) usage >&2; bench_die "unknown option $1" ;;
        esac
        shift 2
    done
    local number
    for number in "$DURATION" "$CONNECTIONS" "$WORKERS" "$FREQUENCY" "$BASE_PORT"; do
        [[ $number =~ ^[1-9][0-9]*$ ]] || bench_die "expected a positive integer, got '$number'"
    done
    case $BODY in 12b | 1k | 64k) ;; post) MODE=post ;; *) bench_die "--body: 12b, 1k, 64k or post" ;; esac
    case $CALL_GRAPH in fp | dwarf) ;; *) bench_die "--call-graph: fp or dwarf" ;; esac
    bench_check_cpus_exist "$PROXY_CPUS"
    bench_check_cpus_exist "$LOAD_CPUS"
}

# Release code has no frame pointers by default, so fp stacks stop after one frame.
build_for_profiling() {
    if [[ $CALL_GRAPH == fp ]]; then
        local target="${CARGO_TARGET_DIR:-$REPO/target}-frame-pointers"
        bench_log "building with frame pointers into $target"
        RINGPROXY_BIN=$(CARGO_TARGET_DIR=$target RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes" \
            bench_build_ringproxy "$REPO")
    else
        RINGPROXY_BIN=$(bench_build_ringproxy "$REPO")
    fi
}

perf_call_graph_args() {
    if [[ $CALL_GRAPH == fp ]]; then echo "-g"; else echo "--call-graph dwarf,16384"; fi
}

main() {
    parse_args "$@"
    bench_install_traps
    ulimit -n 65536 2>/dev/null || true
    bench_ensure_commands wrk:wrk nginx:nginx curl:curl taskset:util-linux perf:linux-perf pgrep:procps
    bench_ensure_cargo_tool inferno-collapse-perf inferno
    bench_ensure_cargo_tool inferno-flamegraph inferno
    if [[ -z $RINGPROXY_BIN ]]; then build_for_profiling; fi
    [[ -x $RINGPROXY_BIN ]] || bench_die "ringproxy binary $RINGPROXY_BIN is not executable"
    RINGPROXY_BIN=$(realpath "$RINGPROXY_BIN")

    bench_make_workdir
    bench_write_wrk_scripts
    local port=$((BASE_PORT + 1)) path=$BODY load_threads commit svg url
    url="http://127.0.0.1:$port/$path"
    if ((TLS)); then
        bench_make_tls_cert "$BENCH_WORKDIR/tls"
        url="https://127.0.0.1:$((port + BENCH_TLS_PORT_OFFSET))/$path"
    fi
    bench_start_backend "$BASE_PORT" "$LOAD_CPUS" 1
    bench_start_proxy_ringproxy "$port" "$BASE_PORT" "$PROXY_CPUS" "$WORKERS" "$CONNECTIONS"
    bench_check_proxy_forwards ringproxy "$port"
    read -ra load_threads <<<"$(bench_expand_cpus "$LOAD_CPUS")"

    # wrk runs 1 s before and after the recording so perf sees only steady state.
    bench_log "load: wrk ${#load_threads[@]} thread(s), $CONNECTIONS connections, $url ($MODE), $((DURATION + 2))s"
    bench_wrk_start "$LOAD_CPUS" "${#load_threads[@]}" "$CONNECTIONS" $((DURATION + 2)) "$MODE" \
        "$url" "$BENCH_WORKDIR/wrk.txt"
    sleep 1
    bench_log "perf record -e cpu-clock -F $FREQUENCY $(perf_call_graph_args) -p $BENCH_PROXY_PID (${DURATION}s)"
    # shellcheck disable=SC2046
    perf record -e cpu-clock -F "$FREQUENCY" $(perf_call_graph_args) -p "$BENCH_PROXY_PID" \
        -o "$BENCH_WORKDIR/perf.data" -- sleep "$DURATION" 2>"$BENCH_WORKDIR/perf-record.log" ||
        bench_die "perf record failed: $(tail -n 5 "$BENCH_WORKDIR/perf-record.log")"
    bench_wrk_wait
    read -r rps _ p50 p99 p999 err_status err_socket <<<"$(bench_parse_wrk "$BENCH_WORKDIR/wrk.txt")"
    bench_log "under load: $rps req/s, p50 ${p50}us p99 ${p99}us p99.9 ${p999}us, errors status $err_status socket $err_socket"

    commit=$(bench_git_describe "$REPO")
    mkdir -p "$PERF_DIR/flamegraphs"
    svg="$PERF_DIR/flamegraphs/$(date -u +%Y%m%d-%H%M%S)-$commit.svg"
    perf script -i "$BENCH_WORKDIR/perf.data" 2>/dev/null |
        inferno-collapse-perf >"$BENCH_WORKDIR/stacks.folded"
    inferno-flamegraph --title "ringproxy $commit: $CONNECTIONS conns $url $MODE, $WORKERS worker(s), $rps req/s" \
        <"$BENCH_WORKDIR/stacks.folded" >"$svg"
    bench_log "flame graph: $svg"

    echo "Top 25 symbols (self time, perf report --no-children):"
    perf report -i "$BENCH_WORKDIR/perf.data" --no-children --stdio -g none --percent-limit 0 \
        --sort dso,symbol 2>/dev/null | grep -v -e '^#' -e '^$' | sed 's/[[:space:]-]*$//' | head -n 25
}

main "$@"; exit
