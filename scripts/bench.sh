#!/usr/bin/env bash
# ringproxy beside nginx and HAProxy on one static backend, interleaved, with ratios.
# See perf/README.md for what every column means and how to read noise.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/bench-common.sh
source "$SCRIPT_DIR/lib/bench-common.sh"

ALL_PROXIES=(ringproxy nginx haproxy)
quote_args() {
    local arg quoted=()
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./,:=@%+-]+$ ]]; then quoted+=("$arg"); else quoted+=("$(printf '%q' "$arg")"); fi
    done
    echo "${quoted[*]}"
}
COMMAND_LINE=$(quote_args "$0" "$@")

usage() {
    cat <<'EOF'
Usage: scripts/bench.sh [options]

  --matrix quick|full     quick: keep-alive, 50 conns, GET 12b and 1k (default)
                          full: keep-alive at 50 and 256 conns x 12b/1k/64k, a
                          Connection: close run, a 16 KiB POST, HTTPS keep-alive
                          12b/1k, full and resumed TLS handshakes, TLS to the backend
                          12b/1k; 1 and 2 workers
  --only LIST             proxies to run, from ringproxy,nginx,haproxy (default: all)
  --reps N                repetitions, each runs every proxy in turn (default 3)
  --duration S            seconds per wrk run (default 10)
  --warmup S              unrecorded wrk run per proxy before each scenario (default 1; 0 = none)
  --connections LIST      connection counts, e.g. 50,256 (overrides the matrix)
  --bodies LIST           GET bodies from 12b,1k,64k (overrides the matrix)
  --scenarios LIST        kinds to run, from ka,close,post,tls,hs,resume,backend-tls,log,nometrics (default: the
                          matrix's; e.g. --scenarios post measures the 16 KiB POST alone).
                          tls: keep-alive over HTTPS (64k only when --bodies names it).
                          hs: full TLS handshakes, one per
                          request (oha --disable-keepalive, whatever --load says), with an
                          ECDSA P-256 and with an RSA-2048 certificate. resume: resumed
                          handshakes, one per request (wrk with Connection: close, which
                          resumes with the session ticket of its previous connection).
                          backend-tls: plain keep-alive from the load tool, TLS from each
                          proxy to the backend (its certificate verified, connections and
                          sessions reused).
                          log: keep-alive with each proxy writing an access log to a
                          file (ringproxy's combined, nginx's combined with buffer=64k,
                          HAProxy's option httplog); with ka, a table of the log's cost.
                          nometrics: keep-alive with ringproxy's [runtime] metrics = false
                          (nginx and HAProxy as in ka: they cannot turn their counters
                          off); with ka, a table of what metrics cost ringproxy.
                          Every proxy terminates TLS with the same certificates; these
                          rows run at the first connection count
  --load wrk|oha          load tool for the ka, close, post and tls rows (default wrk).
                          oha: its native-tls build (OpenSSL; the default rustls one
                          resumes TLS sessions), installed with cargo when missing
  --workers 1|2           proxy workers (full matrix: both unless given)
  --proxy-cpus LIST       cores for the proxies; W workers use the first W (default 0,1)
  --load-cpus LIST        cores for backend + wrk (default: the cores the proxies don't use,
                          or all cores when the proxies use them all)
  --out FILE              also append the markdown report to FILE
  --repo DIR              ringproxy source to build (default: this script's repository)
  --ringproxy-bin PATH    use this binary instead of building
  --base-port N           backend port; proxies use the next ports (default 18080)
  --together              run the proxies at the same time, each with its own wrk, instead
                          of in turn: all see the same machine, so the ratios hold when
                          the host's speed drifts; the proxy cores are then shared and
                          saturated (perf/README.md)
  --keep                  keep the work dir (configs, logs, raw results.tsv)
  -h, --help              this text
EOF
}

MATRIX=quick ONLY=ringproxy,nginx,haproxy REPS=3 DURATION=10 WARMUP=1
CONNECTIONS="" BODIES="" SCENARIO_KINDS="" WORKERS="" PROXY_CPUS="0,1" LOAD_CPUS="" OUT=""
REPO="" RINGPROXY_BIN="" BASE_PORT=18080 TOGETHER=0 LOAD=wrk

parse_args() {
    local flag value
    while (($#)); do
        flag=$1
        if [[ $flag == --*=* ]]; then
            value=${flag#*=}
            flag=${flag%%=*}
        elif (($# > 1)); then
            value=$2
        else
            value=""
        fi
        case $flag in
        -h | --help) usage; exit 0 ;;
        --keep) BENCH_KEEP_WORKDIR=1; shift; continue ;;
        --together) TOGETHER=1; shift; continue ;;
        --matrix | --only | --reps | --duration | --warmup | --connections | --bodies | --scenarios | \
            --workers | --load | \
            --proxy-cpus | --load-cpus | --out | --repo | --ringproxy-bin | --base-port) ;;
        *) usage >&2; bench_die "unknown option $flag" ;;
        esac
        [[ -n $value ]] || bench_die "$flag needs a value"
        case $flag in
        --matrix) MATRIX=$value ;;
        --only) ONLY=$value ;;
        --reps) REPS=$value ;;
        --duration) DURATION=${value%s} ;;
        --warmup) WARMUP=${value%s} ;;
        --connections) CONNECTIONS=$value ;;
        --bodies) BODIES=$value ;;
        --scenarios) SCENARIO_KINDS=$value ;;
        --workers) WORKERS=$value ;;
        --load) LOAD=$value ;;
        --proxy-cpus) PROXY_CPUS=$value ;;
        --load-cpus) LOAD_CPUS=$value ;;
        --out) OUT=$value ;;
        --repo) REPO=$value ;;
        --ringproxy-bin) RINGPROXY_BIN=$value ;;
        --base-port) BASE_PORT=$value ;;
        esac
        if [[ $1 == --*=* ]]; then shift; else shift 2; fi
    done
}

require_uint() { # flag value [minimum]
    if [[ ! $2 =~ ^[0-9]+$ ]] || (($2 < ${3:-1})); then
        bench_die "$1 must be an integer >= ${3:-1}, got '$2'"
    fi
}

validate_args() {
    local name proxy ok
    require_uint --reps "$REPS"
    require_uint --duration "$DURATION"
    require_uint --warmup "$WARMUP" 0
    require_uint --base-port "$BASE_PORT" 1024
    ((BASE_PORT + 20 < 65536)) || bench_die "--base-port too high"
    case $MATRIX in quick | full) ;; *) bench_die "--matrix must be quick or full" ;; esac
    if [[ -n $WORKERS ]]; then
        [[ $WORKERS == 1 || $WORKERS == 2 ]] || bench_die "--workers must be 1 or 2"
    fi
    TARGETS=()
    for name in ${ONLY//,/ }; do
        ok=0
        for proxy in "${ALL_PROXIES[@]}"; do [[ $name == "$proxy" ]] && ok=1; done
        ((ok)) || bench_die "--only: unknown proxy '$name' (choose from ${ALL_PROXIES[*]})"
        TARGETS+=("$name")
    done
    ((${#TARGETS[@]})) || bench_die "--only selects no proxy"
    for name in ${BODIES//,/ }; do
        case $name in 12b | 1k | 64k) ;; *) bench_die "--bodies: unknown body '$name' (12b, 1k, 64k)" ;; esac
    done
    for name in ${CONNECTIONS//,/ }; do require_uint --connections "$name"; done
    for name in ${SCENARIO_KINDS//,/ }; do
        case $name in ka | close | post | tls | hs | resume | backend-tls | log | nometrics) ;; *) bench_die "--scenarios: unknown kind '$name' (ka, close, post, tls, hs, resume, backend-tls, log, nometrics)" ;; esac
    done
    [[ $LOAD == wrk || $LOAD == oha ]] || bench_die "--load must be wrk or oha"
    bench_check_cpus_exist "$PROXY_CPUS"
    [[ -z $LOAD_CPUS ]] || bench_check_cpus_exist "$LOAD_CPUS"
    [[ -z $OUT ]] || touch "$OUT" || bench_die "cannot write --out $OUT"
}

# Scenarios as "mode conns path": mode ka|close|post.
build_scenarios() {
    local conns bodies body first
    if [[ $MATRIX == full ]]; then
        conns=${CONNECTIONS:-50,256}
        bodies=${BODIES:-12b,1k,64k}
        read -ra WORKER_MODES <<<"${WORKERS:-1 2}"
    else
        conns=${CONNECTIONS:-50}
        bodies=${BODIES:-12b,1k}
        read -ra WORKER_MODES <<<"${WORKERS:-1}"
    fi
    local kinds=${SCENARIO_KINDS:-ka}
    if [[ $MATRIX == full && -z $SCENARIO_KINDS ]]; then kinds=ka,close,post,tls,hs,resume,backend-tls,log,nometrics; fi
    SCENARIOS=()
    if [[ ,$kinds, == *,ka,* ]]; then
        for first in ${conns//,/ }; do
            for body in ${bodies//,/ }; do SCENARIOS+=("ka $first $body"); done
        done
    fi
    first=${conns%%,*}
    if [[ ,$kinds, == *,close,* ]]; then SCENARIOS+=("close $first 12b"); fi
    if [[ ,$kinds, == *,post,* ]]; then SCENARIOS+=("post $first post"); fi
    if [[ ,$kinds, == *,tls,* ]]; then
        # 64 KiB over HTTPS only when asked for: the full matrix would grow by a row per worker count.
        for body in ${bodies//,/ }; do [[ $body == 64k && -z $BODIES ]] || SCENARIOS+=("tls $first $body"); done
    fi
    if [[ ,$kinds, == *,hs,* ]]; then SCENARIOS+=("hs-ecdsa $first 12b" "hs-rsa $first 12b"); fi
    if [[ ,$kinds, == *,resume,* ]]; then SCENARIOS+=("resume $first 12b"); fi
    if [[ ,$kinds, == *,backend-tls,* ]]; then
        for body in ${bodies//,/ }; do [[ $body == 64k ]] || SCENARIOS+=("backend-tls $first $body"); done
    fi
    if [[ ,$kinds, == *,log,* ]]; then
        for body in ${bodies//,/ }; do [[ $body == 64k ]] || SCENARIOS+=("log $first $body"); done
    fi
    if [[ ,$kinds, == *,nometrics,* ]]; then
        for body in ${bodies//,/ }; do [[ $body == 64k ]] || SCENARIOS+=("nometrics $first $body"); done
    fi
    MAX_CONNECTIONS=0
    for first in ${conns//,/ }; do
        if ((first > MAX_CONNECTIONS)); then MAX_CONNECTIONS=$first; fi
    done
}

scenario_key() { # mode conns path
    echo "$1-c$2-$3"
}

scenario_label() { # mode conns path
    local body
    case $3 in 12b) body="GET 12 B" ;; 1k) body="GET 1 KiB" ;; 64k) body="GET 64 KiB" ;; post) body="POST 16 KiB, 3 B reply" ;; esac
    case $1 in
    ka) echo "keep-alive, $2 connections, $body" ;;
    close) echo "Connection: close, $2 connections, $body" ;;
    post) echo "keep-alive, $2 connections, $body" ;;
    tls) echo "HTTPS keep-alive, $2 connections, $body" ;;
    hs-ecdsa) echo "Full TLS handshakes, ECDSA P-256, $2 connections, $body per connection" ;;
    hs-rsa) echo "Full TLS handshakes, RSA-2048, $2 connections, $body per connection" ;;
    resume) echo "Resumed TLS handshakes (session tickets), $2 connections, $body per connection" ;;
    backend-tls) echo "keep-alive, $2 connections, $body, TLS to the backend" ;;
    log) echo "keep-alive, access log on, $2 connections, $body" ;;
    nometrics) echo "keep-alive, ringproxy's metrics off, $2 connections, $body" ;;
    esac
}

# Rows whose unit is a TLS handshake: one per request, on a new connection.
is_handshake_row() { # mode
    [[ $1 == hs-* || $1 == resume ]]
}

# Uses TLS on any port (or to the backend).
is_tls_row() { # mode
    [[ $1 == tls || $1 == backend-tls ]] || is_handshake_row "$1"
}

# The load tool of a row: oha for full handshakes (it keeps no TLS sessions), wrk for
# resumed ones (it resumes its previous connection's session), --load for the rest.
row_tool() { # mode
    case $1 in
    hs-*) echo oha ;;
    resume) echo wrk ;;
    *) echo "$LOAD" ;;
    esac
}

row_tools() {
    local scenario tool tools=" "
    for scenario in "${SCENARIOS[@]}"; do
        tool=$(row_tool "${scenario%% *}")
        [[ $tools == *" $tool "* ]] || tools+="$tool "
    done
    echo "$tools"
}

# Worker mode W: proxies on the first W of --proxy-cpus; load on --load-cpus or the rest.
plan_cpus() { # workers
    local all_proxy load=() cpu used=" "
    read -ra all_proxy <<<"$(bench_expand_cpus "$PROXY_CPUS")"
    ((${#all_proxy[@]} >= $1)) || bench_die "--proxy-cpus $PROXY_CPUS has fewer than $1 cores"
    MODE_PROXY_CPUS=$(
        IFS=,
        echo "${all_proxy[*]:0:$1}"
    )
    if [[ -n $LOAD_CPUS ]]; then
        MODE_LOAD_CPUS=$LOAD_CPUS
    else
        for cpu in ${MODE_PROXY_CPUS//,/ }; do used+="$cpu "; done
        for ((cpu = 0; cpu < $(nproc --all); cpu++)); do
            [[ $used == *" $cpu "* ]] || load+=("$cpu")
        done
        if ((${#load[@]})); then
            MODE_LOAD_CPUS=$(
                IFS=,
                echo "${load[*]}"
            )
        else
            MODE_LOAD_CPUS="0-$(($(nproc --all) - 1))"
        fi
    fi
    read -ra load <<<"$(bench_expand_cpus "$MODE_LOAD_CPUS")"
    WRK_THREADS=${#load[@]}
}

# The URL a scenario's load tool loads, and the mode (ka, close, post) it runs in.
scenario_url() { # proxy workers mode path
    local port
    port=$(proxy_port "$1" "$2")
    case $3 in
    hs-rsa) echo "https://127.0.0.1:$((port + BENCH_TLS_RSA_PORT_OFFSET))/$4" ;;
    tls | hs-ecdsa | resume) echo "https://127.0.0.1:$((port + BENCH_TLS_PORT_OFFSET))/$4" ;;
    backend-tls) echo "http://127.0.0.1:$((port + BENCH_BACKEND_TLS_OFFSET))/$4" ;;
    log) echo "http://127.0.0.1:$((port + BENCH_LOG_PORT_OFFSET))/$4" ;;
    nometrics) if [[ $1 == ringproxy ]]; then echo "http://127.0.0.1:$((port + BENCH_NOMETRICS_PORT_OFFSET))/$4"; else echo "http://127.0.0.1:$port/$4"; fi ;;
    *) echo "http://127.0.0.1:$port/$4" ;;
    esac
}

load_mode() { # mode
    case $1 in
    tls | backend-tls | log | nometrics) echo ka ;;
    hs-* | resume) echo close ;;
    *) echo "$1" ;;
    esac
}

proxy_port() { # proxy workers
    local index
    case $1 in ringproxy) index=1 ;; nginx) index=2 ;; haproxy) index=3 ;; esac
    echo $((BASE_PORT + 10 * ($2 - 1) + index))
}

declare -A CPU_PIDS_OF=() LOG_CPU_PIDS_OF=() NOMETRICS_CPU_PIDS_OF=()

# The pids whose CPU time a run of `mode` counts: for the log rows, ringproxy's second
# process (the one with the access log); for the nometrics rows, its third.
cpu_pids_of() { # proxy mode
    case $2 in
    log) echo "${LOG_CPU_PIDS_OF[$1]}" ;;
    nometrics) if [[ $1 == ringproxy ]]; then echo "${NOMETRICS_CPU_PIDS_OF[$1]}"; else echo "${CPU_PIDS_OF[$1]}"; fi ;;
    *) echo "${CPU_PIDS_OF[$1]}" ;;
    esac
}

start_mode() { # workers
    local workers=$1 proxy port backend_port=$((BASE_PORT + 10 * ($1 - 1)))
    BENCH_PIDS=()
    bench_start_backend "$backend_port" "$MODE_LOAD_CPUS" 1
    for proxy in "${TARGETS[@]}"; do
        port=$(proxy_port "$proxy" "$workers")
        "bench_start_proxy_$proxy" "$port" "$backend_port" "$MODE_PROXY_CPUS" "$workers" "$MAX_CONNECTIONS"
        CPU_PIDS_OF[$proxy]=$BENCH_PROXY_CPU_PIDS
        LOG_CPU_PIDS_OF[$proxy]=$BENCH_PROXY_LOG_CPU_PIDS
        NOMETRICS_CPU_PIDS_OF[$proxy]=$BENCH_PROXY_NOMETRICS_CPU_PIDS
        bench_check_proxy_forwards "$proxy" "$port"
        if [[ " ${SCENARIOS[*]} " == *" resume "* ]]; then
            bench_check_tls_resumes "$proxy" "$((port + BENCH_TLS_PORT_OFFSET))"
        fi
        bench_log "$proxy on :$port (cpus $MODE_PROXY_CPUS, $workers worker(s), cpu pids $BENCH_PROXY_CPU_PIDS)"
    done
}

# ringproxy's TLS counters, to check that a handshake row was what it says: "full resumed
# REASON=N..." (failures by reason), or nothing when its admin listener does not answer (a
# stand-in binary).
ringproxy_tls_counts() {
    { curl -sS --max-time 2 "http://127.0.0.1:$BENCH_RINGPROXY_ADMIN_PORT/metrics" 2>/dev/null || true; } | awk '
        /^ringproxy_tls_handshakes_total\{kind="full"\}/ { full = $2 }
        /^ringproxy_tls_handshakes_total\{kind="resumed"\}/ { resumed = $2; seen = 1 }
        /^ringproxy_tls_handshake_failures_total/ {
            split($1, label, "\""); failed = failed " " label[2] "=" $2
        }
        END { if (seen) printf "%d %d%s\n", full, resumed, failed }'
}

stop_mode() {
    if ((${#BENCH_PIDS[@]})); then bench_stop_pids "${BENCH_PIDS[@]}"; fi
    BENCH_PIDS=()
}

RESULTS=""
CLK_TCK=$(getconf CLK_TCK)

# One wrk run against one proxy, in two halves so that --together can start every
# proxy's run before the first ends: run_start snapshots the proxy's CPU time and starts
# wrk, run_finish waits for it and appends a row to $RESULTS.
declare -A RUN_WRK=() RUN_OUT=() RUN_TICKS=() RUN_USER=() RUN_STEAL=() RUN_NS=() RUN_TOOL=() RUN_TLS=() RUN_MODE=()
TLS_COUNTS="" # per handshake-row run of ringproxy: workers key rep full resumed failed

run_start() { # workers scenario_key rep proxy mode conns path
    local workers=$1 key=$2 rep=$3 proxy=$4 mode=$5 conns=$6 path=$7 cpu_pids threads
    RUN_OUT[$proxy]="$BENCH_WORKDIR/runs/w$workers-$key-r$rep-$proxy.txt"
    RUN_TOOL[$proxy]=$(row_tool "$mode")
    RUN_TLS[$proxy]=""
    if [[ $proxy == ringproxy ]] && is_handshake_row "$mode"; then RUN_TLS[$proxy]=$(ringproxy_tls_counts); fi
    threads=$((WRK_THREADS < conns ? WRK_THREADS : conns))
    RUN_MODE[$proxy]=$mode
    read -ra cpu_pids <<<"$(cpu_pids_of "$proxy" "$mode")"
    read -r "RUN_TICKS[$proxy]" "RUN_USER[$proxy]" <<<"$(bench_cpu_ticks "${cpu_pids[@]}")"
    RUN_STEAL[$proxy]=$(bench_steal_sample)
    RUN_NS[$proxy]=$(date +%s%N)
    "bench_${RUN_TOOL[$proxy]}_start" "$MODE_LOAD_CPUS" "$threads" "$conns" "$DURATION" "$(load_mode "$mode")" \
        "$(scenario_url "$proxy" "$workers" "$mode" "$path")" "${RUN_OUT[$proxy]}"
    RUN_WRK[$proxy]=$BENCH_WRK_PID
}

# Appends ringproxy's handshakes during the run to $TLS_COUNTS: full, resumed, then the
# failures by reason ("closed=3 timeout=1"; none when there were none).
record_tls_counts() { # workers scenario_key rep before
    local after
    after=$(ringproxy_tls_counts)
    [[ -n $4 && -n $after ]] || return 0
    awk -v w="$1" -v k="$2" -v r="$3" -v before="$4" -v after="$after" 'BEGIN {
        n = split(before, b, " "); split(after, a, " ")
        failed = ""
        for (i = 3; i <= n; i++) {
            split(b[i], x, "="); split(a[i], y, "=")
            if (y[2] - x[2] > 0) failed = failed (failed == "" ? "" : " ") x[1] "=" y[2] - x[2]
        }
        printf "%s\t%s\t%s\t%d\t%d\t%s\n", w, k, r, a[1] - b[1], a[2] - b[2], failed
    }' >>"$TLS_COUNTS"
}

run_finish() { # workers scenario_key rep proxy
    local workers=$1 key=$2 rep=$3 proxy=$4 out=${RUN_OUT[$4]} cpu_pids ticks user steal ns
    local rps requests p50 p99 p999 err_status err_socket cpu_us user_us busy
    bench_wrk_wait "${RUN_WRK[$proxy]}"
    ns=$(date +%s%N)
    if [[ -n ${RUN_TLS[$proxy]} ]]; then record_tls_counts "$workers" "$key" "$rep" "${RUN_TLS[$proxy]}"; fi
    steal=$(bench_steal_percent "${RUN_STEAL[$proxy]}" "$(bench_steal_sample)")
    read -ra cpu_pids <<<"$(cpu_pids_of "$proxy" "${RUN_MODE[$proxy]}")"
    read -r ticks user <<<"$(bench_cpu_ticks "${cpu_pids[@]}")"
    ticks=$((ticks - RUN_TICKS[$proxy])) user=$((user - RUN_USER[$proxy]))
    read -r rps requests p50 p99 p999 err_status err_socket <<<"$("bench_parse_${RUN_TOOL[$proxy]}" "$out")"
    ((requests > 0)) || bench_die "$proxy completed no request in $key (see $out)"
    # A run's log is counted, then emptied (10 s of lines at 50k req/s is ~100 MB).
    if [[ ${RUN_MODE[$proxy]} == log ]]; then
        bench_log "$proxy access log: $(wc -l <"$BENCH_ACCESS_LOG_DIR/$proxy.log") lines for $requests requests (and those after the measured window)"
        : >"$BENCH_ACCESS_LOG_DIR/$proxy.log"
    fi
    cpu_us=$(bench_us_per_request "$ticks" "$requests")
    user_us=$(bench_us_per_request "$user" "$requests")
    busy=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v ns=$((ns - RUN_NS[$proxy])) -v w="$workers" \
        'BEGIN { printf "%.1f", 100 * t / hz / (ns / 1e9) / w }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workers" "$key" "$rep" "$proxy" \
        "$rps" "$requests" "$p50" "$p99" "$p999" "$err_status" "$err_socket" "$cpu_us" "$busy" "$steal" "$user_us" >>"$RESULTS"
    bench_log "w$workers $key rep $rep $proxy: $rps req/s, $cpu_us us CPU/req, core busy $busy%, steal $steal%, errors $err_status/$err_socket"
}

warm_up() { # workers mode conns path
    local proxy
    ((WARMUP > 0)) || return 0
    for proxy in "${TARGETS[@]}"; do
        "bench_$(row_tool "$2")_start" "$MODE_LOAD_CPUS" "$((WRK_THREADS < $3 ? WRK_THREADS : $3))" "$3" "$WARMUP" \
            "$(load_mode "$2")" "$(scenario_url "$proxy" "$1" "$2" "$4")" "$BENCH_WORKDIR/runs/warmup.txt"
        bench_wrk_wait
    done
}

# Every repetition runs each proxy once: in turn, the starting proxy rotating so that a
# slow drift in machine load does not always hit the same one first; or, with --together,
# all at once.
run_scenario() { # workers mode conns path
    local workers=$1 mode=$2 conns=$3 path=$4 key rep i proxy n=${#TARGETS[@]}
    key=$(scenario_key "$mode" "$conns" "$path")
    warm_up "$workers" "$mode" "$conns" "$path"
    for ((rep = 1; rep <= REPS; rep++)); do
        if ((TOGETHER)); then
            for proxy in "${TARGETS[@]}"; do run_start "$workers" "$key" "$rep" "$proxy" "$mode" "$conns" "$path"; done
            for proxy in "${TARGETS[@]}"; do run_finish "$workers" "$key" "$rep" "$proxy"; done
            continue
        fi
        for ((i = 0; i < n; i++)); do
            proxy=${TARGETS[$(((rep - 1 + i) % n))]}
            run_start "$workers" "$key" "$rep" "$proxy" "$mode" "$conns" "$path"
            run_finish "$workers" "$key" "$rep" "$proxy"
        done
    done
}

# --- report ----------------------------------------------------------------------

emit() { # markdown text: stdout and --out
    printf '%s\n' "$*"
    [[ -z $OUT ]] || printf '%s\n' "$*" >>"$OUT"
}

version_of() {
    case $1 in
    nginx) nginx -v 2>&1 | sed -n 's|.*nginx/||p' ;;
    haproxy) haproxy -v 2>/dev/null | awk 'NR == 1 { print $3 }' ;;
    wrk) { wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }' ;;
    oha) "$BENCH_OHA" --version 2>/dev/null | awk '{ print $2 " (native-tls)" }' ;;
    esac
}

emit_header() {
    local commit_dir=${REPO:-$SCRIPT_DIR/..} order="interleaved"
    if ((TOGETHER)); then order="together (all at once on the proxy cores, one wrk each)"; fi
    emit ""
    emit "## Proxy benchmark $(date -u '+%Y-%m-%d %H:%M UTC')"
    emit ""
    emit "- commit: \`$(bench_git_describe "$commit_dir")\` ($(cd "$commit_dir" && pwd))"
    emit "- kernel: $(uname -r); $(nproc --all) cores; $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    emit "- command: \`$COMMAND_LINE\`"
    local tool tools=""
    for tool in $(row_tools); do tools+=", $tool $(version_of "$tool")"; done
    emit "- nginx $(version_of nginx), HAProxy $(version_of haproxy)$tools (load: $LOAD for ka/close/post/tls rows, oha for full handshakes, wrk for resumed ones)"
    emit "- proxies: $(IFS=' '; echo "${TARGETS[*]}"); $REPS reps x ${DURATION}s per proxy, $order; warm-up ${WARMUP}s"
    emit "- steal: per run in the tables; whole run in the footer"
}

# Per proxy of one scenario: "proxy rps_med rps_min rps_max p50 p99 p999 err_status err_socket cpu_med busy_med steal_max user_med flags"
summarize() { # workers key
    awk -F'\t' -v w="$1" -v key="$2" '
        function median(src, n,    b, i, j, t) {
            for (i = 1; i <= n; i++) b[i] = src[i] + 0
            for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j + 1] = b[j]; b[j + 1] = t }
            return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
        }
        function spread(src, n, med,    i) {
            for (i = 1; i <= n; i++) if (med > 0 && (src[i] - med > 0.25 * med || med - src[i] > 0.25 * med)) return 1
            return 0
        }
        $1 == w && $2 == key {
            p = $4
            if (!(p in n)) order[++np] = p
            k = ++n[p]
            rps[p, k] = $5; p50[p, k] = $7; p99[p, k] = $8; p999[p, k] = $9
            es[p] += $10; eso[p] += $11; cpu[p, k] = $12; busy[p, k] = $13; user[p, k] = $15
            if ($14 + 0 > steal[p] + 0) steal[p] = $14
            if (!((p, "min") in rps) || $5 + 0 < rps[p, "min"]) rps[p, "min"] = $5 + 0
            if (!((p, "max") in rps) || $5 + 0 > rps[p, "max"]) rps[p, "max"] = $5 + 0
        }
        END {
            for (q = 1; q <= np; q++) {
                p = order[q]; m = n[p]
                for (k = 1; k <= m; k++) { a[k] = rps[p, k]; b[k] = p50[p, k]; c[k] = p99[p, k]; d[k] = p999[p, k]; e[k] = cpu[p, k]; f[k] = busy[p, k]; g[k] = user[p, k] }
                rmed = median(a, m); cmed = median(e, m)
                flags = ""
                if (m < 2) flags = flags "1-rep "
                if (steal[p] + 0 > 5) flags = flags "steal>5% "
                if (spread(a, m, rmed)) flags = flags "req/s-spread>25% "
                if (spread(e, m, cmed)) flags = flags "cpu-spread>25% "
                if (flags == "") flags = "-"
                gsub(/ $/, "", flags); gsub(/ /, ",", flags)
                printf "%s %.0f %.0f %.0f %.1f %.1f %.1f %d %d %.3f %.1f %.2f %.3f %s\n", p, rmed, rps[p, "min"], rps[p, "max"],
                    median(b, m), median(c, m), median(d, m), es[p], eso[p], cmed, median(f, m), steal[p] + 0, median(g, m), flags
            }
        }' "$RESULTS"
}

fmt_us() {
    awk -v us="$1" 'BEGIN {
        if (us < 1000) printf "%.0f µs", us
        else if (us < 1e6) printf "%.2f ms", us / 1000
        else printf "%.2f s", us / 1e6 }'
}

ratio() { # value baseline; "–" when either is missing ("" or "-")
    if [[ -z $1 || -z $2 || $1 == - || $2 == - ]]; then
        echo "–"
    else
        awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }'
    fi
}

# "nginx_cpu nginx_rps haproxy_cpu haproxy_rps" of a summary; "-" for a proxy not run.
baselines() { # summary
    awk '$1 == "nginx" { nc = $10; nr = $2 } $1 == "haproxy" { hc = $10; hr = $2 }
        END { print (nc == "" ? "-" : nc), (nr == "" ? "-" : nr), (hc == "" ? "-" : hc), (hr == "" ? "-" : hr) }' <<<"$1"
}

# The cells every table starts a proxy's row with: name, rate, latencies, errors.
first_cells() { # proxy rmed rmin rmax p50 p99 p999 err_status err_socket
    local errors=0
    (($8 + $9 == 0)) || errors="status $8 / socket $9"
    echo "| $1 | $2 ($3..$4) | $(fmt_us "$5") | $(fmt_us "$6") | $(fmt_us "$7") | $errors"
}

emit_scenario_table() { # workers mode conns path
    local workers=$1 key summary nginx_cpu nginx_rps haproxy_cpu haproxy_rps
    local p rmed rmin rmax p50 p99 p999 es eso cpu busy steal user flags
    key=$(scenario_key "$2" "$3" "$4")
    summary=$(summarize "$workers" "$key")
    read -r nginx_cpu nginx_rps haproxy_cpu haproxy_rps <<<"$(baselines "$summary")"
    emit ""
    emit "### $(scenario_label "$2" "$3" "$4") — $workers worker(s), proxy cpus $MODE_PROXY_CPUS, load cpus $MODE_LOAD_CPUS"
    emit ""
    emit "| proxy | req/s median (min..max) | p50 | p99 | p99.9 | errors | CPU µs/req | of which user | CPU/req vs nginx | vs haproxy | req/s vs nginx | vs haproxy | core busy | steal max | noise |"
    emit "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    while read -r p rmed rmin rmax p50 p99 p999 es eso cpu busy steal user flags; do
        emit "$(first_cells "$p" "$rmed" "$rmin" "$rmax" "$p50" "$p99" "$p999" "$es" "$eso")" \
            "| $cpu | $user | $(ratio "$cpu" "$nginx_cpu") | $(ratio "$cpu" "$haproxy_cpu")" \
            "| $(ratio "$rmed" "$nginx_rps") | $(ratio "$rmed" "$haproxy_rps") | $busy% | $steal% | $flags |"
    done <<<"$summary"
}

# A handshake row: per core is 1e6 / CPU µs per handshake, and its ratios are baseline CPU
# over ringproxy's, so above 1.00 means ringproxy does more handshakes with a core.
emit_handshake_table() { # workers mode conns path
    local workers=$1 key summary nginx_cpu haproxy_cpu per_core
    local p rmed rmin rmax p50 p99 p999 es eso cpu busy steal user flags
    key=$(scenario_key "$2" "$3" "$4")
    summary=$(summarize "$workers" "$key")
    read -r nginx_cpu _ haproxy_cpu _ <<<"$(baselines "$summary")"
    emit ""
    emit "### $(scenario_label "$2" "$3" "$4") ($(row_tool "$2")) — $workers worker(s), proxy cpus $MODE_PROXY_CPUS, load cpus $MODE_LOAD_CPUS"
    emit ""
    emit "| proxy | handshakes/s median (min..max) | p50 | p99 | p99.9 | errors | CPU µs/handshake | of which user | handshakes/s per core | per core vs nginx | vs haproxy | core busy | steal max | noise |"
    emit "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    while read -r p rmed rmin rmax p50 p99 p999 es eso cpu busy steal user flags; do
        per_core=$(awk -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", 1e6 / c; else print "–" }')
        emit "$(first_cells "$p" "$rmed" "$rmin" "$rmax" "$p50" "$p99" "$p999" "$es" "$eso")" \
            "| $cpu | $user | $per_core | $(ratio "$nginx_cpu" "$cpu") | $(ratio "$haproxy_cpu" "$cpu")" \
            "| $busy% | $steal% | $flags |"
    done <<<"$summary"
    emit_tls_counts "$workers" "$2" "$key"
}

# What ringproxy's counters saw during the measured runs of a handshake row: a full-handshake
# row must have no resumption, a resumed row one full handshake per connection at most.
emit_tls_counts() { # workers mode key
    local full resumed failed verdict
    read -r full resumed failed <<<"$(awk -F'\t' -v w="$1" -v k="$3" '
        $1 == w && $2 == k {
            f += $4; r += $5; n++
            m = split($6, pairs, " ")
            for (i = 1; i <= m; i++) { split(pairs[i], kv, "="); if (!(kv[1] in x)) order[++o] = kv[1]; x[kv[1]] += kv[2] }
        }
        END {
            if (!n) exit
            out = ""
            for (i = 1; i <= o; i++) out = out (out == "" ? "" : ", ") order[i] " " x[order[i]]
            print f, r, (out == "" ? "none" : out)
        }' "$TLS_COUNTS")"
    if [[ -z $full ]]; then
        emit ""
        emit "ringproxy's TLS counters: not read (no admin listener answered)."
        return 0
    fi
    verdict="as the row says"
    if [[ $2 == hs-* ]] && ((resumed * 100 > full + resumed)); then verdict="NOT all full handshakes"; fi
    if [[ $2 == resume ]] && ((full * 10 > full + resumed)); then verdict="NOT mostly resumed"; fi
    emit ""
    emit "ringproxy's TLS counters over the measured runs: $full full and $resumed resumed handshakes ($verdict); failed: $failed."
    [[ $verdict == "as the row says" ]] || bench_log "warning: $3: ringproxy counted $full full and $resumed resumed handshakes"
}

emit_scaling_table() {
    local scenario key proxy one two
    ((${#WORKER_MODES[@]} > 1)) || return 0
    emit ""
    emit "### Scaling: 2 workers vs 1 worker (median req/s; CPU µs/req)"
    emit ""
    emit "| scenario | proxy | req/s 1w | req/s 2w | ratio 2w/1w | CPU µs/req 1w | CPU µs/req 2w |"
    emit "|---|---|---|---|---|---|---|"
    for scenario in "${SCENARIOS[@]}"; do
        # shellcheck disable=SC2086
        key=$(scenario_key $scenario)
        for proxy in "${TARGETS[@]}"; do
            one=$(summarize 1 "$key" | awk -v p="$proxy" '$1 == p { print $2, $10 }')
            two=$(summarize 2 "$key" | awk -v p="$proxy" '$1 == p { print $2, $10 }')
            [[ -n $one && -n $two ]] || continue
            emit "| $key | $proxy | ${one% *} | ${two% *} | $(ratio "${two% *}" "${one% *}") | ${one#* } | ${two#* } |"
        done
    done
}

# Each proxy's CPU per request with its access log on (log) against off (ka), per body.
emit_access_log_table() {
    local scenario mode conns path proxy off on workers
    [[ -n $BENCH_ACCESS_LOG_DIR ]] || return 0
    emit ""
    emit "### Access log: CPU µs/req off (keep-alive) vs on (log), median"
    emit ""
    emit "| workers | scenario | proxy | off | on | on/off |"
    emit "|---|---|---|---|---|---|"
    for workers in "${WORKER_MODES[@]}"; do
        for scenario in "${SCENARIOS[@]}"; do
            read -r mode conns path <<<"$scenario"
            [[ $mode == log ]] || continue
            for proxy in "${TARGETS[@]}"; do
                off=$(summarize "$workers" "$(scenario_key ka "$conns" "$path")" | awk -v p="$proxy" '$1 == p { print $10 }')
                on=$(summarize "$workers" "$(scenario_key log "$conns" "$path")" | awk -v p="$proxy" '$1 == p { print $10 }')
                [[ -n $off && -n $on ]] || continue
                emit "| $workers | $conns conns $path | $proxy | $off | $on | $(ratio "$on" "$off") |"
            done
        done
    done
}

# ringproxy's CPU per request with metrics on (ka) against off (nometrics), per body; and,
# since the rows ran at different moments, each against nginx's in the same row, which
# cancels a drift in the machine's load between them.
emit_metrics_table() {
    local scenario mode conns path on off on_nginx off_nginx workers
    [[ " ${SCENARIOS[*]} " == *" nometrics "* && " ${TARGETS[*]} " == *" ringproxy "* ]] || return 0
    emit ""
    emit "### Metrics: ringproxy CPU µs/req on (keep-alive, the default) vs off (nometrics), median"
    emit ""
    emit "| workers | scenario | on | off | on/off | on vs nginx | off vs nginx | ratio of those |"
    emit "|---|---|---|---|---|---|---|---|"
    for workers in "${WORKER_MODES[@]}"; do
        for scenario in "${SCENARIOS[@]}"; do
            read -r mode conns path <<<"$scenario"
            [[ $mode == nometrics ]] || continue
            read -r on on_nginx <<<"$(cpu_and_nginx "$workers" ka "$conns" "$path")"
            read -r off off_nginx <<<"$(cpu_and_nginx "$workers" nometrics "$conns" "$path")"
            [[ -n $off && -n $on ]] || continue
            emit "| $workers | $conns conns $path | $on | $off | $(ratio "$on" "$off") | $on_nginx | $off_nginx | $(ratio "$on_nginx" "$off_nginx") |"
        done
    done
}

# "ringproxy's CPU µs/req, its ratio to nginx's" in one row ("–" without nginx).
cpu_and_nginx() { # workers mode conns path
    local summary mine nginx
    summary=$(summarize "$1" "$(scenario_key "$2" "$3" "$4")")
    mine=$(awk '$1 == "ringproxy" { print $10 }' <<<"$summary")
    nginx=$(awk '$1 == "nginx" { print $10 }' <<<"$summary")
    echo "$mine $(ratio "$mine" "$nginx")"
}

main() {
    local workers scenario steal_start
    parse_args "$@"
    validate_args
    build_scenarios
    for workers in "${WORKER_MODES[@]}"; do plan_cpus "$workers"; done # fail before any run
    bench_install_traps
    ulimit -n 65536 2>/dev/null || true
    bench_ensure_commands wrk:wrk nginx:nginx haproxy:haproxy curl:curl taskset:util-linux pgrep:procps
    if [[ $(row_tools) == *" oha "* ]]; then
        bench_ensure_commands python3:python3 # reads oha's JSON
        bench_ensure_oha
    fi
    for scenario in "${TARGETS[@]}"; do
        [[ $scenario == ringproxy ]] || continue
        if [[ -z $RINGPROXY_BIN ]]; then
            RINGPROXY_BIN=$(bench_build_ringproxy "${REPO:-$SCRIPT_DIR/..}")
        fi
        [[ -x $RINGPROXY_BIN ]] || bench_die "--ringproxy-bin $RINGPROXY_BIN is not executable"
        RINGPROXY_BIN=$(realpath "$RINGPROXY_BIN")
    done
    bench_make_workdir
    mkdir -p "$BENCH_WORKDIR/runs"
    RESULTS="$BENCH_WORKDIR/results.tsv"
    TLS_COUNTS="$BENCH_WORKDIR/tls-counts.tsv"
    : >"$RESULTS"
    : >"$TLS_COUNTS"
    BENCH_RINGPROXY_ADMIN_PORT=$((BASE_PORT + 20))
    bench_write_wrk_scripts
    for scenario in "${SCENARIOS[@]}"; do
        if is_tls_row "${scenario%% *}"; then
            bench_ensure_commands openssl:openssl
            bench_make_tls_cert "$BENCH_WORKDIR/tls"
            break
        fi
    done
    for scenario in "${SCENARIOS[@]}"; do
        if [[ $scenario == log* ]]; then
            BENCH_ACCESS_LOG_DIR="$BENCH_WORKDIR/access-logs"
            mkdir -p "$BENCH_ACCESS_LOG_DIR"
            chmod 777 "$BENCH_ACCESS_LOG_DIR" # nginx workers may run as another user
            break
        fi
    done
    if [[ " ${SCENARIOS[*]} " == *" nometrics "* ]]; then BENCH_NOMETRICS=1; fi
    steal_start=$(bench_steal_sample)
    emit_header
    for workers in "${WORKER_MODES[@]}"; do
        plan_cpus "$workers"
        start_mode "$workers"
        for scenario in "${SCENARIOS[@]}"; do
            # shellcheck disable=SC2086
            run_scenario "$workers" $scenario
            # shellcheck disable=SC2086
            if is_handshake_row "${scenario%% *}"; then
                emit_handshake_table "$workers" $scenario
            else
                emit_scenario_table "$workers" $scenario
            fi
        done
        stop_mode
    done
    emit_scaling_table
    emit_access_log_table
    emit_metrics_table
    emit ""
    emit "Steal over the whole run: $(bench_steal_percent "$steal_start" "$(bench_steal_sample)")% of all cores."
}

# `exit` on the same line: bash reads scripts as it runs them, so an edit to this file
# during a long run must not be picked up after main returns.
main "$@"; exit
