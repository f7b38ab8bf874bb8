#!/usr/bin/env bash
# Counts the user-space instructions ringproxy spends per proxied request, under callgrind,
# with wrk as the client and the bench backend behind it. Instruction counts do not depend
# on what else the machine is doing, so a user-space change can be judged on a noisy VM
# where CPU-time A/B runs cannot see a few percent. Kernel time is not counted: use
# perf/ab.sh and perf/profile.sh for that.
#
#   perf/callgrind.sh [--connections N] [--body 12b|1k|64k] [--duration S] [--port P] [--tls]
#                     [--access-log combined|json] [--toml TEXT] BIN
#
# --port: the backend's port (the proxy takes the next one); default 19280.
# --tls: the proxy terminates TLS (an ECDSA P-256 certificate, wrk over https); also prints
# the share of the instructions spent in the record layer's cryptography.
# --access-log: run with the access log on, in that format, to a file in the work dir.
# --toml: more configuration, appended to the file (e.g. '[forwarded]\nrequest_id = false').
#   Either runs ringproxy with a generated config instead of --listen/--upstream (not with --tls).
#
# Prints instructions per request over the whole run and, per request, the inclusive cost
# of the request loop's main functions. The callgrind output file stays for
# callgrind_annotate.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/bench-common.sh
source "$SCRIPT_DIR/../scripts/lib/bench-common.sh"

CONNECTIONS=50 BODY=12b DURATION=10 PROXY_CPU=0 LOAD_CPU=1 BASE_PORT=19280 BIN="" TLS=0 ACCESS_LOG="" TOML=""
while (($#)); do
    case $1 in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --body) BODY=$2; shift 2 ;;
    --duration) DURATION=${2%s}; shift 2 ;;
    --port) BASE_PORT=$2; shift 2 ;;
    --tls) TLS=1; shift ;;
    --access-log) ACCESS_LOG=$2; shift 2 ;;
    --toml) TOML=$2; shift 2 ;;
    -h | --help) sed -n 2,21p "$0"; exit 0 ;;
    -*) bench_die "unknown option $1" ;;
    *) BIN=$1; shift ;;
    esac
done
[[ -n $BIN ]] || bench_die "name a ringproxy binary"

bench_install_traps
bench_make_workdir
bench_ensure_commands wrk:wrk nginx:nginx valgrind:valgrind curl:curl
bench_write_wrk_scripts
bench_start_backend "$BASE_PORT" "$LOAD_CPU"

proxy_port=$((BASE_PORT + 1))
out="$PWD/callgrind.$(basename "$BIN").$(date +%Y%m%d-%H%M%S).out"
bench_require_free_port "$proxy_port" ringproxy
scheme=http
proxy_args=(--listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$BASE_PORT")
if [[ -n $ACCESS_LOG || -n $TOML ]]; then
    ((TLS)) && bench_die "--tls runs from flags; it does not combine with --access-log or --toml"
    config="$BENCH_WORKDIR/ringproxy.toml"
    printf '[[listener]]\naddress = "127.0.0.1:%s"\n\n[upstream.default]\nbackends = ["127.0.0.1:%s"]\n\n' \
        "$proxy_port" "$BASE_PORT" >"$config"
    if [[ -n $ACCESS_LOG ]]; then
        printf '[access_log]\npath = "%s"\nformat = "%s"\n\n' "$BENCH_WORKDIR/access.log" "$ACCESS_LOG" >>"$config"
    fi
    printf '%b\n' "$TOML" >>"$config"
    proxy_args=(--config "$config")
elif ((TLS)); then
    bench_make_tls_cert "$BENCH_WORKDIR/tls"
    scheme=https
    proxy_args+=(--tls-cert "$BENCH_TLS_CERT" --tls-key "$BENCH_TLS_KEY")
fi
url="$scheme://127.0.0.1:$proxy_port/$BODY"
taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" \
    "${proxy_args[@]}" --workers 1 --cpus "$PROXY_CPU" 2>"$BENCH_WORKDIR/valgrind.log" &
proxy_pid=$!
BENCH_PIDS+=("$proxy_pid")
# Under valgrind one thread runs at a time and a worker asleep in io_uring_enter can hold the
# others off: connections wake it, so the main thread gets to finish starting up.
deadline=$((SECONDS + 120))
until grep -q "ringproxy: ready" "$BENCH_WORKDIR/valgrind.log"; do
    bench_alive "$proxy_pid" || bench_die "ringproxy exited under valgrind: $BENCH_WORKDIR/valgrind.log"
    ((SECONDS < deadline)) || bench_die "ringproxy not ready under valgrind within 120 s"
    curl -sk -m 1 -o /dev/null "$url" || true
    sleep 0.3
done
bench_wrk "$LOAD_CPU" 1 "$CONNECTIONS" "$DURATION" ka "$url" "$BENCH_WORKDIR/run.txt"
kill -INT "$proxy_pid"
wait "$proxy_pid" || true
read -r _ requests _ <<<"$(bench_parse_wrk "$BENCH_WORKDIR/run.txt")"
((requests > 0)) || bench_die "no requests served"

callgrind_annotate --inclusive=yes --auto=no "$out" 2>/dev/null | awk -v n="$requests" -v out="$out" '
    /PROGRAM TOTALS/ { gsub(",", "", $1); printf "%d requests, %.0f instructions per request (%s)\n", n, $1 / n, out }
    /\]$/ && /serve_request::\{\{closure\}\} \[|read_response_head::\{\{closure\}\} \[|RecvBuf::fill::\{\{closure\}\} \[|write_vec::\{\{closure\}\} \[|Deadline::run::\{\{closure\}\} \[|parse_headers_iter_uninit \[|FieldScan::scan \[|write_request_head \[|write_response_head \[|Upstreams::pick \[/ {
        v = $1; gsub(",", "", v); name = $0; sub(/.*\.rs:/, "", name); sub(/ \[.*/, "", name)
        printf "  %7.0f  %s\n", v / n, name
    }'
if ((TLS)); then
    # Self cost of the AEAD (aws-lc's AES-GCM and GHASH), and of aws-lc's jitter entropy,
    # which seeds its random generators: under valgrind its timing loops run far longer than
    # natively, so it is kept apart from the rest.
    callgrind_annotate --inclusive=no --auto=no "$out" 2>/dev/null | awk -v n="$requests" '
        /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1; next }
        { v = $1; gsub(",", "", v) }
        /jitterentropy/ { jitter += v; next }
        /aesni|aes_hw|gcm|ghash/ { aead += v }
        END {
            if (!total) exit
            rest = total - jitter
            printf "aws-lc jitter entropy: %.0f instructions per request (left out below)\n", jitter / n
            printf "record-layer AEAD: %.0f of %.0f instructions per request (%.1f%%)\n", aead / n, rest / n, 100 * aead / rest
        }'
fi
