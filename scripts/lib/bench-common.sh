# shellcheck shell=bash
# Shared by scripts/bench.sh and perf/profile.sh: process bookkeeping, port checks,
# the static nginx backend, the three proxies (ringproxy, nginx, HAProxy), wrk runs
# and /proc readings. Source it after `set -euo pipefail`.

BENCH_PIDS=()          # every long-running process started here; cleanup stops them all
BENCH_WORKDIR=""       # generated configs, logs, raw results
BENCH_KEEP_WORKDIR=0
BENCH_APT_UPDATED=0
BENCH_WRK_PIDS=()      # load generators (wrk, oha) while they run (more than one with --together)
BENCH_WRK_PID=""       # the one started last
declare -A BENCH_WRK_OUT_OF=() BENCH_WRK_URL_OF=()
BENCH_NGINX_PID=""     # the last nginx bench_run_nginx started, and its workers
BENCH_NGINX_WORKER_PIDS=""
# With certificates (bench_make_tls_cert), each proxy also terminates TLS on its port plus
# these offsets, with the same certificates for all: ECDSA P-256 and RSA-2048.
BENCH_TLS_CERT="" BENCH_TLS_KEY="" BENCH_TLS_PEM=""
BENCH_TLS_RSA_CERT="" BENCH_TLS_RSA_KEY="" BENCH_TLS_RSA_PEM=""
BENCH_TLS_PORT_OFFSET=3
BENCH_TLS_RSA_PORT_OFFSET=6
# With them, the backend also serves HTTPS on its port plus BENCH_BACKEND_TLS_OFFSET (an
# ECDSA P-256 leaf signed by a bench CA), which each proxy reaches over TLS (verifying the
# name "localhost", sent as SNI; connections and sessions reused) from a plain listener on
# its own port plus the same offset.
BENCH_BACKEND_CA="" BENCH_BACKEND_CERT="" BENCH_BACKEND_KEY=""
BENCH_BACKEND_TLS_OFFSET=100
# When set, ringproxy's admin listener (/metrics) is on this port.
BENCH_RINGPROXY_ADMIN_PORT=""
# With an access log directory, each proxy also serves on its port plus BENCH_LOG_PORT_OFFSET
# with an access log written to a file there (<proxy>.log): ringproxy as a second process
# (its access log is the process's), nginx and HAProxy in the same one (a server / frontend
# of its own). The pids to count a logging run's CPU time of are in BENCH_PROXY_LOG_CPU_PIDS.
BENCH_ACCESS_LOG_DIR=""
BENCH_LOG_PORT_OFFSET=200
BENCH_PROXY_LOG_CPU_PIDS=""
# With BENCH_NOMETRICS=1, ringproxy also serves on its port plus BENCH_NOMETRICS_PORT_OFFSET
# from a third process with `[runtime] metrics = false` (pids in
# BENCH_PROXY_NOMETRICS_CPU_PIDS).
BENCH_NOMETRICS=0
BENCH_NOMETRICS_PORT_OFFSET=300
BENCH_PROXY_NOMETRICS_CPU_PIDS=""

bench_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# --- process bookkeeping ---------------------------------------------------------

# A zombie still answers `kill -0`, so read the state letter instead.
bench_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

bench_stop_pids() {
    local pid deadline
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    for pid in "$@"; do
        while bench_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if bench_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#BENCH_WRK_PIDS[@]})); then bench_stop_pids "${BENCH_WRK_PIDS[@]}"; fi
    if ((${#BENCH_PIDS[@]})); then bench_stop_pids "${BENCH_PIDS[@]}"; fi
    wait 2>/dev/null || true
    if [[ -n $BENCH_WORKDIR && -d $BENCH_WORKDIR ]]; then
        if ((BENCH_KEEP_WORKDIR)); then
            bench_log "kept work dir (configs, logs, raw results): $BENCH_WORKDIR"
        else
            rm -rf "$BENCH_WORKDIR"
        fi
    fi
    exit "$rc"
}

# Background children of a non-interactive shell ignore SIGINT, so Ctrl-C must
# reach them through the EXIT trap.
bench_install_traps() {
    trap bench_cleanup EXIT
    trap 'bench_log interrupted; exit 130' INT
    trap 'bench_log terminated; exit 143' TERM
}

bench_make_workdir() {
    BENCH_WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-bench.XXXXXX")
    chmod 755 "$BENCH_WORKDIR" # nginx workers may run as another user
}

# --- tools -----------------------------------------------------------------------

bench_apt_install() {
    command -v apt-get >/dev/null || bench_die "missing $*; install it (no apt-get here)"
    ((EUID == 0)) || bench_die "missing $*; run as root or install: apt-get install -y $*"
    if ((!BENCH_APT_UPDATED)); then
        bench_log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        BENCH_APT_UPDATED=1
    fi
    bench_log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# Usage: bench_ensure_commands cmd:package ...
bench_ensure_commands() {
    local spec missing=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || missing+=("${spec#*:}")
    done
    if ((${#missing[@]})); then bench_apt_install "${missing[@]}"; fi
}

bench_ensure_cargo_tool() { # binary crate
    command -v "$1" >/dev/null && return 0
    command -v cargo >/dev/null || bench_die "missing $1 and cargo to install it"
    bench_log "cargo install $2 --locked"
    cargo install "$2" --locked >&2
}

# oha as the benchmark runs it (set by bench_ensure_oha): its native-tls build, which opens
# every connection with OpenSSL and no session cache. The default build (rustls) shares one
# session cache between its connections, so with --disable-keepalive all but the first
# handshake of each connection slot resume (ringproxy's counters: 728 of 732 in a 2 s run).
BENCH_OHA=""

bench_ensure_oha() {
    local own="${XDG_CACHE_HOME:-$HOME/.cache}/ringproxy/oha-native-tls" found
    found=$(command -v oha || true)
    if [[ -n $found ]] && ldd "$found" 2>/dev/null | grep -q 'libssl\.so'; then
        BENCH_OHA=$found
        return 0
    fi
    BENCH_OHA=$own/bin/oha
    [[ -x $BENCH_OHA ]] && return 0
    command -v cargo >/dev/null || bench_die "missing oha and cargo to install it"
    bench_ensure_commands pkg-config:pkg-config cc:gcc
    pkg-config --exists openssl || bench_apt_install libssl-dev
    bench_log "cargo install oha --no-default-features --features native-tls (into $own: OpenSSL, no TLS session reuse; takes minutes)"
    cargo install oha --locked --no-default-features --features native-tls --root "$own" >&2
}

# Prints the path of the release binary. Respects CARGO_TARGET_DIR.
bench_build_ringproxy() { # repo_dir
    local repo=$1
    [[ -f $repo/Cargo.toml ]] || bench_die "no Cargo.toml in $repo (use --repo or --ringproxy-bin)"
    bench_log "cargo build --release ($repo)"
    cargo build --release --manifest-path "$repo/Cargo.toml" >&2 ||
        bench_die "ringproxy build failed in $repo"
    local bin="${CARGO_TARGET_DIR:-$repo/target}/release/ringproxy"
    [[ -x $bin ]] || bench_die "build finished but $bin is missing"
    printf '%s\n' "$bin"
}

bench_git_describe() { # dir
    local commit dirty=""
    commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null) || {
        echo "unknown"
        return 0
    }
    git -C "$1" diff --quiet HEAD 2>/dev/null || dirty="-dirty"
    printf '%s%s\n' "$commit" "$dirty"
}

# --- cpu lists -------------------------------------------------------------------

# "0-2,5" -> "0 1 2 5"
bench_expand_cpus() {
    local part cpu expanded=()
    local IFS=,
    for part in $1; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            for ((cpu = BASH_REMATCH[1]; cpu <= BASH_REMATCH[2]; cpu++)); do expanded+=("$cpu"); done
        elif [[ $part =~ ^[0-9]+$ ]]; then
            expanded+=("$part")
        else
            bench_die "bad cpu list '$1'"
        fi
    done
    ((${#expanded[@]})) || bench_die "empty cpu list"
    IFS=' '
    echo "${expanded[*]}"
}

bench_check_cpus_exist() {
    local cpu max
    max=$(($(nproc --all) - 1))
    for cpu in $(bench_expand_cpus "$1"); do
        ((cpu <= max)) || bench_die "cpu $cpu does not exist (this machine has 0-$max)"
    done
}

# nginx worker_cpu_affinity wants one bit mask per worker: cpu 3 -> 1000.
bench_nginx_affinity() {
    local cpu masks=()
    for cpu in $(bench_expand_cpus "$1"); do
        masks+=("1$(printf '%*s' "$cpu" '' | tr ' ' 0)")
    done
    echo "${masks[*]}"
}

# --- ports -----------------------------------------------------------------------

bench_port_listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

bench_require_free_port() { # port what
    local owner=""
    if bench_port_listening "$1"; then
        command -v ss >/dev/null && owner=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -3)
        bench_die "port $1 (for $2) is already in use on 127.0.0.1; stop that process or pick --base-port. ${owner}"
    fi
}

bench_wait_for_port() { # port name pid log [timeout_s]
    local port=$1 name=$2 pid=$3 log=$4 deadline=$((SECONDS + ${5:-15}))
    until bench_port_listening "$port"; do
        bench_alive "$pid" || bench_die "$name exited during startup; last log lines:
$(tail -n 20 "$log" 2>/dev/null)"
        ((SECONDS < deadline)) || bench_die "$name not listening on 127.0.0.1:$port after ${5:-15}s; log: $log"
        sleep 0.1
    done
}

bench_wait_for_log_line() { # pattern name pid log [timeout_s]
    local deadline=$((SECONDS + ${5:-15}))
    until grep -q -- "$1" "$4" 2>/dev/null; do
        bench_alive "$3" || bench_die "$2 exited during startup; last log lines:
$(tail -n 20 "$4" 2>/dev/null)"
        ((SECONDS < deadline)) || bench_die "$2 did not print '$1' within ${5:-15}s; log: $4"
        sleep 0.1
    done
}

# Children of an nginx master are its workers; the master does no request work.
bench_wait_for_children() { # parent count name
    local deadline=$((SECONDS + 10)) kids
    while :; do
        # The master listens before it forks, so the first looks may find no worker.
        kids=$(pgrep -P "$1" | tr '\n' ' ' || true)
        kids=${kids% }
        if (($(wc -w <<<"$kids") >= $2)); then
            echo "$kids"
            return 0
        fi
        ((SECONDS < deadline)) || bench_die "$3: expected $2 worker processes, found: ${kids:-none}"
        sleep 0.1
    done
}

# --- nginx -----------------------------------------------------------------------
# The backend and the nginx proxy share these: everything nginx writes stays in the
# instance's work dir (its compiled-in paths may not exist or be writable), with file
# descriptors for BENCH_NGINX_CONNECTIONS (default 8192) connections per worker.

bench_nginx_main_settings() { # dir
    local connections=${BENCH_NGINX_CONNECTIONS:-8192}
    cat <<EOF
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile $((connections + 8192));
events { worker_connections $connections; }
EOF
}

bench_nginx_temp_paths() { # dir; inside http {}
    cat <<EOF
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
EOF
}

# Runs nginx on DIR/nginx.conf pinned to CPUS and waits until it listens on PORT with
# WORKERS worker processes. Sets BENCH_NGINX_PID (the master) and BENCH_NGINX_WORKER_PIDS.
bench_run_nginx() { # dir cpus port workers name
    local dir=$1 cpus=$2 port=$3 workers=$4 name=$5 worker_pids
    taskset -c "$cpus" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        -g 'daemon off;' >"$dir/stdout.log" 2>&1 &
    BENCH_NGINX_PID=$!
    BENCH_PIDS+=("$BENCH_NGINX_PID")
    bench_wait_for_port "$port" "$name" "$BENCH_NGINX_PID" "$dir/error.log"
    BENCH_NGINX_WORKER_PIDS=$(bench_wait_for_children "$BENCH_NGINX_PID" "$workers" "$name")
    read -ra worker_pids <<<"$BENCH_NGINX_WORKER_PIDS"
    BENCH_PIDS+=("${worker_pids[@]}")
}

# --- backend ---------------------------------------------------------------------

# Static nginx origin with one worker: /12b /1k /64k files and POST /post -> "ok".
# Sets BENCH_BACKEND_PID.
bench_start_backend() { # port cpus [workers]
    local port=$1 cpus=$2 workers=${3:-1} dir="$BENCH_WORKDIR/backend"
    bench_require_free_port "$port" "backend nginx"
    mkdir -p "$dir/www" "$dir/tmp"
    chmod -R 755 "$dir"
    printf 'hello world\n' >"$dir/www/12b"
    head -c 1024 /dev/zero | tr '\0' a >"$dir/www/1k"
    head -c 65536 /dev/zero | tr '\0' b >"$dir/www/64k"
    cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
$(bench_nginx_main_settings "$dir")
http {
    access_log off;
    server_tokens off;
    etag off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    default_type application/octet-stream;
$(bench_nginx_temp_paths "$dir")
    server {
        listen 127.0.0.1:$port backlog=4096;
        $(bench_backend_tls_listen "$port")
        root $dir/www;
        location = /post {
            client_max_body_size 1m;
            client_body_buffer_size 64k;
            return 200 "ok\n";
        }
    }
}
EOF
    bench_run_nginx "$dir" "$cpus" "$port" "$workers" "backend nginx"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    BENCH_BACKEND_PID=$BENCH_NGINX_PID
    bench_log "backend nginx on :$port (cpus $cpus, $workers worker)"
}

# --- TLS -------------------------------------------------------------------------

# One ECDSA P-256 and one RSA-2048 certificate for every proxy (self-signed, SAN localhost
# and 127.0.0.1): the certificates nginx and HAProxy deployments benchmark with; the load
# tools do not verify them.
bench_make_tls_cert() { # dir
    mkdir -p "$1"
    bench_make_one_cert "$1" ecdsa -newkey ec -pkeyopt ec_paramgen_curve:P-256
    bench_make_one_cert "$1" rsa -newkey rsa:2048
    chmod -R a+r "$1"
    BENCH_TLS_CERT=$1/ecdsa-cert.pem BENCH_TLS_KEY=$1/ecdsa-key.pem BENCH_TLS_PEM=$1/ecdsa-haproxy.pem
    BENCH_TLS_RSA_CERT=$1/rsa-cert.pem BENCH_TLS_RSA_KEY=$1/rsa-key.pem BENCH_TLS_RSA_PEM=$1/rsa-haproxy.pem
    bench_make_backend_cert "$1"
}

# The backend's: a leaf (CA:FALSE) signed by a CA of its own, as an internal PKI issues them;
# rustls, unlike OpenSSL, refuses a self-signed CA certificate as a server's.
bench_make_backend_cert() { # dir
    printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$1/backend.ext"
    if ! {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=bench backend CA" -keyout "$1/backend-ca.key" -out "$1/backend-ca.pem" &&
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
                -keyout "$1/backend-key.pem" -out "$1/backend.csr" &&
            openssl x509 -req -in "$1/backend.csr" -CA "$1/backend-ca.pem" -CAkey "$1/backend-ca.key" \
                -CAcreateserial -days 30 -extfile "$1/backend.ext" -out "$1/backend-cert.pem"
    } >>"$1/openssl.log" 2>&1; then
        bench_die "openssl could not make the backend's certificate: $(cat "$1/openssl.log")"
    fi
    chmod -R a+r "$1"
    BENCH_BACKEND_CA=$1/backend-ca.pem BENCH_BACKEND_CERT=$1/backend-cert.pem BENCH_BACKEND_KEY=$1/backend-key.pem
}

# The backend's HTTPS listener, when there is a certificate for it.
bench_backend_tls_listen() { # backend_port
    [[ -n $BENCH_BACKEND_CA ]] || return 0
    bench_require_free_port "$(($1 + BENCH_BACKEND_TLS_OFFSET))" "backend nginx"
    printf 'listen 127.0.0.1:%s ssl backlog=4096;\n        ssl_certificate %s;\n        ssl_certificate_key %s;\n' \
        "$(($1 + BENCH_BACKEND_TLS_OFFSET))" "$BENCH_BACKEND_CERT" "$BENCH_BACKEND_KEY"
}

bench_make_one_cert() { # dir name openssl-key-args...
    local dir=$1 name=$2
    shift 2
    openssl req -x509 "$@" -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/$name-key.pem" -out "$dir/$name-cert.pem" >"$dir/openssl.log" 2>&1 ||
        bench_die "openssl could not make the $name certificate: $(cat "$dir/openssl.log")"
    # HAProxy wants both in one file.
    cat "$dir/$name-cert.pem" "$dir/$name-key.pem" >"$dir/$name-haproxy.pem"
}

# The TLS ports of a proxy on PORT, ECDSA then RSA; none without certificates.
bench_tls_ports() { # port
    [[ -n $BENCH_TLS_CERT ]] || return 0
    echo "$(($1 + BENCH_TLS_PORT_OFFSET)) $(($1 + BENCH_TLS_RSA_PORT_OFFSET))"
}

# "cert key haproxy_pem" served on TLS_PORT of a proxy on PORT.
bench_tls_files() { # port tls_port
    if (($2 == $1 + BENCH_TLS_RSA_PORT_OFFSET)); then
        echo "$BENCH_TLS_RSA_CERT $BENCH_TLS_RSA_KEY $BENCH_TLS_RSA_PEM"
    else
        echo "$BENCH_TLS_CERT $BENCH_TLS_KEY $BENCH_TLS_PEM"
    fi
}

# --- proxies ---------------------------------------------------------------------
# Each bench_start_proxy_<name> takes: port backend_port cpus workers keepalive
# and sets BENCH_PROXY_PID (to stop) and BENCH_PROXY_CPU_PIDS (to account CPU of).

bench_start_proxy_ringproxy() {
    local port=$1 backend=$2 cpus=$3 workers=$4 dir="$BENCH_WORKDIR/ringproxy"
    [[ -n ${RINGPROXY_BIN:-} ]] || bench_die "RINGPROXY_BIN not set"
    mkdir -p "$dir"
    bench_require_free_port "$port" ringproxy
    # With a second group (TLS to the backend), each listener names its group.
    local to_default=""
    [[ -z $BENCH_BACKEND_CA ]] || to_default="upstream = \"default\""$'\n'
    local listeners="[[listener]]"$'\n'"address = \"127.0.0.1:$port\""$'\n'"$to_default" tls_port cert key admin=""
    local groups="[upstream.default]"$'\n'"backends = [\"127.0.0.1:$backend\"]"$'\n'
    for tls_port in $(bench_tls_ports "$port"); do
        bench_require_free_port "$tls_port" ringproxy
        read -r cert key _ <<<"$(bench_tls_files "$port" "$tls_port")"
        listeners+="[[listener]]"$'\n'"address = \"127.0.0.1:$tls_port\""$'\n'"$to_default"
        listeners+="[listener.tls]"$'\n'"cert = \"$cert\""$'\n'"key = \"$key\""$'\n'
    done
    if [[ -n $BENCH_BACKEND_CA ]]; then
        bench_require_free_port "$((port + BENCH_BACKEND_TLS_OFFSET))" ringproxy
        listeners+="[[listener]]"$'\n'"address = \"127.0.0.1:$((port + BENCH_BACKEND_TLS_OFFSET))\""$'\n'
        listeners+="upstream = \"tls\""$'\n'
        groups+="[upstream.tls]"$'\n'"backends = [\"127.0.0.1:$((backend + BENCH_BACKEND_TLS_OFFSET))\"]"$'\n'
        groups+="[upstream.tls.tls]"$'\n'"ca = \"$BENCH_BACKEND_CA\""$'\n'"sni = \"localhost\""$'\n'
    fi
    if [[ -n $BENCH_RINGPROXY_ADMIN_PORT ]]; then
        bench_require_free_port "$BENCH_RINGPROXY_ADMIN_PORT" "ringproxy admin"
        admin=$'\n'"[admin]"$'\n'"address = \"127.0.0.1:$BENCH_RINGPROXY_ADMIN_PORT\""$'\n'
    fi
    # Every other setting at its default, as with --listen and --upstream.
    bench_run_ringproxy "$dir" "$port" "$listeners"$'\n'"$groups$admin" "$cpus" "$workers"
    BENCH_PROXY_LOG_CPU_PIDS=""
    if [[ -n $BENCH_ACCESS_LOG_DIR ]]; then
        local log_port=$((port + BENCH_LOG_PORT_OFFSET)) main=$BENCH_PROXY_PID
        local logging="[[listener]]"$'\n'"address = \"127.0.0.1:$log_port\""$'\n'
        logging+="upstream = \"default\""$'\n'$'\n'"$groups"
        logging+=$'\n'"[access_log]"$'\n'"path = \"$BENCH_ACCESS_LOG_DIR/ringproxy.log\""$'\n'
        bench_require_free_port "$log_port" ringproxy
        bench_run_ringproxy "$BENCH_WORKDIR/ringproxy-log" "$log_port" "$logging" "$cpus" "$workers"
        BENCH_PROXY_LOG_CPU_PIDS=$BENCH_PROXY_PID
        BENCH_PROXY_PID=$main
    fi
    BENCH_PROXY_NOMETRICS_CPU_PIDS=""
    if ((BENCH_NOMETRICS)); then
        local quiet_port=$((port + BENCH_NOMETRICS_PORT_OFFSET)) main=$BENCH_PROXY_PID
        local quiet="[runtime]"$'\n'"metrics = false"$'\n'$'\n'
        quiet+="[[listener]]"$'\n'"address = \"127.0.0.1:$quiet_port\""$'\n'
        quiet+="upstream = \"default\""$'\n'$'\n'"$groups"
        bench_require_free_port "$quiet_port" ringproxy
        bench_run_ringproxy "$BENCH_WORKDIR/ringproxy-nometrics" "$quiet_port" "$quiet" "$cpus" "$workers"
        BENCH_PROXY_NOMETRICS_CPU_PIDS=$BENCH_PROXY_PID
        BENCH_PROXY_PID=$main
    fi
    # /proc/PID/stat of the process sums all its threads.
    # shellcheck disable=SC2034 # read by the scripts that source this file
    BENCH_PROXY_CPU_PIDS=$BENCH_PROXY_PID
}

# One ringproxy process with the configuration CONFIG, serving once PORT accepts.
bench_run_ringproxy() { # dir port config cpus workers
    local dir=$1 port=$2 cpus=$4 workers=$5
    mkdir -p "$dir"
    printf '%s' "$3" >"$dir/ringproxy.toml"
    taskset -c "$cpus" "$RINGPROXY_BIN" --config "$dir/ringproxy.toml" \
        --workers "$workers" --cpus "$cpus" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    BENCH_PROXY_PID=$!
    BENCH_PIDS+=("$BENCH_PROXY_PID")
    bench_wait_for_log_line "ringproxy: ready" ringproxy "$BENCH_PROXY_PID" "$dir/stderr.log"
    bench_wait_for_port "$port" ringproxy "$BENCH_PROXY_PID" "$dir/stderr.log"
}

# One server block of the nginx proxy; LISTEN is its listen line (and ssl_ lines).
bench_nginx_proxy_server() { # listen
    cat <<EOF
    server {
        $1
        client_max_body_size 1m;
        client_body_buffer_size 64k;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_busy_buffers_size 32k;
            proxy_max_temp_file_size 0;
        }
    }
EOF
}

# The nginx proxy's plain listener on PORT + BENCH_BACKEND_TLS_OFFSET and the pool of TLS
# connections it proxies to, on the backend's HTTPS port.
bench_nginx_backend_tls_server() { # port backend_port keepalive
    cat <<EOF
    upstream backend_tls {
        server 127.0.0.1:$(($2 + BENCH_BACKEND_TLS_OFFSET));
        keepalive $3;
        keepalive_requests 1000000000;
        keepalive_timeout 600s;
    }
    server {
        listen 127.0.0.1:$(($1 + BENCH_BACKEND_TLS_OFFSET)) reuseport backlog=4096;
        location / {
            proxy_pass https://backend_tls;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $BENCH_BACKEND_CA;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_busy_buffers_size 32k;
            proxy_max_temp_file_size 0;
        }
    }
EOF
}

bench_start_proxy_nginx() {
    local port=$1 backend=$2 cpus=$3 workers=$4 keepalive=$5 dir="$BENCH_WORKDIR/nginx-proxy"
    bench_require_free_port "$port" "nginx proxy"
    local servers tls_port cert key
    servers=$(bench_nginx_proxy_server "listen 127.0.0.1:$port reuseport backlog=4096;")
    for tls_port in $(bench_tls_ports "$port"); do
        bench_require_free_port "$tls_port" "nginx proxy"
        read -r cert key _ <<<"$(bench_tls_files "$port" "$tls_port")"
        servers+=$'\n'$(bench_nginx_proxy_server "listen 127.0.0.1:$tls_port ssl reuseport backlog=4096;
        ssl_certificate $cert;
        ssl_certificate_key $key;")
    done
    if [[ -n $BENCH_BACKEND_CA ]]; then
        bench_require_free_port "$((port + BENCH_BACKEND_TLS_OFFSET))" "nginx proxy"
        servers+=$'\n'$(bench_nginx_backend_tls_server "$port" "$backend" "$keepalive")
    fi
    if [[ -n $BENCH_ACCESS_LOG_DIR ]]; then
        bench_require_free_port "$((port + BENCH_LOG_PORT_OFFSET))" "nginx proxy"
        # Buffered, as ringproxy's is (64 KiB per worker, handed on at least every 50 ms).
        servers+=$'\n'$(bench_nginx_proxy_server "listen 127.0.0.1:$((port + BENCH_LOG_PORT_OFFSET)) reuseport backlog=4096;
        access_log $BENCH_ACCESS_LOG_DIR/nginx.log combined buffer=64k flush=1s;")
    fi
    mkdir -p "$dir/tmp"
    chmod -R 755 "$dir"
    # reuseport: one listener per worker, like ringproxy's per-worker SO_REUSEPORT sockets.
    cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
worker_cpu_affinity $(bench_nginx_affinity "$cpus");
$(bench_nginx_main_settings "$dir")
http {
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
$(bench_nginx_temp_paths "$dir")
    upstream backend {
        server 127.0.0.1:$backend;
        keepalive $keepalive;
        keepalive_requests 1000000000;
        keepalive_timeout 600s;
    }
$servers
}
EOF
    bench_run_nginx "$dir" "$cpus" "$port" "$workers" "nginx proxy"
    BENCH_PROXY_PID=$BENCH_NGINX_PID
    BENCH_PROXY_CPU_PIDS=$BENCH_NGINX_WORKER_PIDS
    BENCH_PROXY_LOG_CPU_PIDS=$BENCH_NGINX_WORKER_PIDS
}

# The HAProxy config of the baseline, also run by haproxy-as-ringproxy.sh so that its A/A
# comparison measures the very same HAProxy: one thread per worker, thread N pinned to the
# Nth cpu of the list (none pinned if it is empty), keep-alive and reuse on both sides.
bench_haproxy_config() { # listen_addr upstream_addr cpus workers ["tls_listen_addr pem"...]
    local listen=$1 upstream=$2 cpus=$3 workers=$4 cpu thread=0 cpu_maps="" tls_bind="" bind
    for bind in "${@:5}"; do tls_bind+="    bind ${bind% *} ssl crt ${bind#* }"$'\n'; done
    if [[ -n $cpus ]]; then
        for cpu in $(bench_expand_cpus "$cpus"); do
            thread=$((thread + 1))
            ((thread <= workers)) || break
            cpu_maps+="    cpu-map 1/$thread $cpu"$'\n'
        done
    fi
    cat <<EOF
global
    nbthread $workers
$cpu_maps    maxconn 4096
defaults
    mode http
    maxconn 4096
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-request 600s
    timeout http-keep-alive 600s
    option http-keep-alive
    http-reuse always
frontend proxy
    bind $listen
$tls_bind    default_backend origin
backend origin
    http-reuse always
    server origin $upstream
EOF
    # The access log: `option httplog` lines to stdout (which the caller sends to the file),
    # from a frontend on the listen port + BENCH_LOG_PORT_OFFSET.
    if [[ -n $BENCH_ACCESS_LOG_DIR ]]; then
        cat <<EOF
frontend proxy_log
    bind ${listen%:*}:$((${listen##*:} + BENCH_LOG_PORT_OFFSET))
    option httplog
    log stdout format raw local0
    default_backend origin
EOF
    fi
    # TLS to the backend: a plain frontend on the listen port + BENCH_BACKEND_TLS_OFFSET.
    [[ -n $BENCH_BACKEND_CA ]] || return 0
    cat <<EOF
frontend proxy_to_tls
    bind ${listen%:*}:$((${listen##*:} + BENCH_BACKEND_TLS_OFFSET))
    default_backend origin_tls
backend origin_tls
    http-reuse always
    server origin_tls ${upstream%:*}:$((${upstream##*:} + BENCH_BACKEND_TLS_OFFSET)) ssl verify required ca-file $BENCH_BACKEND_CA sni str(localhost)
EOF
}

bench_start_proxy_haproxy() {
    local port=$1 backend=$2 cpus=$3 workers=$4 dir="$BENCH_WORKDIR/haproxy"
    bench_require_free_port "$port" haproxy
    mkdir -p "$dir"
    local tls_binds=() tls_port pem
    for tls_port in $(bench_tls_ports "$port"); do
        bench_require_free_port "$tls_port" haproxy
        read -r _ _ pem <<<"$(bench_tls_files "$port" "$tls_port")"
        tls_binds+=("127.0.0.1:$tls_port $pem")
    done
    [[ -z $BENCH_BACKEND_CA ]] || bench_require_free_port "$((port + BENCH_BACKEND_TLS_OFFSET))" haproxy
    local out="$dir/stdout.log"
    if [[ -n $BENCH_ACCESS_LOG_DIR ]]; then
        bench_require_free_port "$((port + BENCH_LOG_PORT_OFFSET))" haproxy
        out="$BENCH_ACCESS_LOG_DIR/haproxy.log"
    fi
    bench_haproxy_config "127.0.0.1:$port" "127.0.0.1:$backend" "$cpus" "$workers" "${tls_binds[@]}" >"$dir/haproxy.cfg"
    haproxy -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1 ||
        bench_die "haproxy rejected its config: $(cat "$dir/check.log")"
    # Appending: the access log file is emptied between runs.
    taskset -c "$cpus" haproxy -db -f "$dir/haproxy.cfg" >>"$out" 2>"$dir/stderr.log" &
    BENCH_PROXY_PID=$!
    BENCH_PIDS+=("$BENCH_PROXY_PID")
    bench_wait_for_port "$port" haproxy "$BENCH_PROXY_PID" "$dir/stderr.log"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    BENCH_PROXY_CPU_PIDS=$BENCH_PROXY_PID
    BENCH_PROXY_LOG_CPU_PIDS=$BENCH_PROXY_PID
}

# Fails loudly when a proxy answers but does not forward the body intact.
bench_check_proxy_forwards() { # name port
    local got
    got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$2/1k" 2>&1) || bench_die "$1 on :$2 does not answer GET /1k: $got"
    [[ $got == "200 1024" ]] || bench_die "$1 on :$2 answered GET /1k with '$got' (want '200 1024')"
    got=$(head -c 16384 /dev/zero | curl -sS --max-time 5 --data-binary @- \
        -w ' %{http_code}' "http://127.0.0.1:$2/post" 2>&1) ||
        bench_die "$1 on :$2 does not answer POST /post: $got"
    [[ $got == $'ok\n 200' ]] || bench_die "$1 on :$2 answered POST /post with '$got'"
    if [[ -n $BENCH_ACCESS_LOG_DIR ]]; then
        got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' \
            "http://127.0.0.1:$(($2 + BENCH_LOG_PORT_OFFSET))/1k" 2>&1) ||
            bench_die "$1 on :$(($2 + BENCH_LOG_PORT_OFFSET)) (access log on) does not answer GET /1k: $got"
        [[ $got == "200 1024" ]] || bench_die "$1 (access log on) answered GET /1k with '$got' (want '200 1024')"
    fi
    local tls_port cert
    for tls_port in $(bench_tls_ports "$2"); do
        read -r cert _ <<<"$(bench_tls_files "$2" "$tls_port")"
        got=$(curl -sS --max-time 5 --cacert "$cert" -o /dev/null -w '%{http_code} %{size_download}' \
            "https://127.0.0.1:$tls_port/1k" 2>&1) ||
            bench_die "$1 on :$tls_port does not answer HTTPS GET /1k: $got"
        [[ $got == "200 1024" ]] || bench_die "$1 on :$tls_port answered HTTPS GET /1k with '$got' (want '200 1024')"
    done
    [[ -n $BENCH_BACKEND_CA ]] || return 0
    got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$(($2 + BENCH_BACKEND_TLS_OFFSET))/1k" 2>&1) ||
        bench_die "$1 on :$(($2 + BENCH_BACKEND_TLS_OFFSET)) does not answer GET /1k (TLS to the backend): $got"
    [[ $got == "200 1024" ]] || bench_die "$1 answered GET /1k over TLS to the backend with '$got' (want '200 1024')"
}

# Fails loudly when a TLS port does not resume sessions: openssl s_client saves the session
# (a TLS 1.3 ticket, read after one request) and must be told "Reused" with it.
bench_check_tls_resumes() { # name tls_port
    local session="$BENCH_WORKDIR/session-$2.pem" again
    printf 'GET /12b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 10 openssl s_client -connect "127.0.0.1:$2" -sess_out "$session" -ign_eof >/dev/null 2>&1 || true
    again=$(timeout 10 openssl s_client -connect "127.0.0.1:$2" -sess_in "$session" </dev/null 2>&1) || true
    [[ $again == *"Reused, TLSv1"* ]] ||
        bench_die "$1 on :$2 did not resume a TLS session with openssl s_client -sess_in: $(grep -m1 -E '^(New|Reused),' <<<"$again")"
}

# --- /proc readings --------------------------------------------------------------

# CPU microseconds per request from a clock-tick count and a request count.
bench_us_per_request() { # ticks requests
    awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz * 1e6 / n }'
}

# "utime+stime utime" in clock ticks, summed over the given pids (each covers all its
# threads): the CPU a proxy used, and how much of it was its own code rather than the kernel.
bench_cpu_ticks() {
    local pid stat fields total=0 user=0
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || bench_die "proxy process $pid exited during the run (see its log under --keep)"
        stat=${stat##*) }
        read -ra fields <<<"$stat"
        total=$((total + fields[11] + fields[12]))
        user=$((user + fields[11]))
    done
    echo "$total $user"
}

# "steal total" jiffies of the aggregate cpu line.
bench_steal_sample() {
    local user nice system idle iowait irq softirq steal
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    echo "$steal $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

bench_steal_percent() { # "before" "after"
    local s0 t0 s1 t1
    read -r s0 t0 <<<"$1"
    read -r s1 t1 <<<"$2"
    awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.2f", (t > 0 ? 100 * s / t : 0) }'
}

# --- load generator --------------------------------------------------------------

# The done() hook prints one parseable line with p99.9, which `wrk --latency` lacks.
bench_write_wrk_scripts() {
    local done_hook
    done_hook=$(
        cat <<'EOF'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH_RESULT requests=%d duration_us=%d bytes=%d p50_us=%.1f p99_us=%.1f p999_us=%.1f " ..
        "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
        summary.requests, summary.duration, summary.bytes,
        latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
        e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
    )
    printf '%s\n' "$done_hook" >"$BENCH_WORKDIR/wrk-get.lua"
    head -c 16384 /dev/zero | tr '\0' x >"$BENCH_WORKDIR/post-body.bin" # oha's POST body
    {
        printf 'wrk.method = "POST"\n'
        printf 'wrk.body = string.rep("x", 16384)\n'
        printf 'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        printf '%s\n' "$done_hook"
    } >"$BENCH_WORKDIR/wrk-post.lua"
}

# Starts wrk in the background and sets BENCH_WRK_PID; its output goes to outfile.
# Usage: bench_wrk_start cpus threads connections duration_s mode(ka|close|post) url outfile
bench_wrk_start() {
    local cpus=$1 threads=$2 conns=$3 duration=$4 mode=$5 url=$6 out=$7
    local args=(-t "$threads" -c "$conns" -d "${duration}s" --latency --timeout 5s)
    case $mode in
    ka) args+=(-s "$BENCH_WORKDIR/wrk-get.lua") ;;
    close) args+=(-s "$BENCH_WORKDIR/wrk-get.lua" -H "Connection: close") ;;
    post) args+=(-s "$BENCH_WORKDIR/wrk-post.lua") ;;
    *) bench_die "unknown wrk mode $mode" ;;
    esac
    taskset -c "$cpus" wrk "${args[@]}" "$url" >"$out" 2>&1 &
    BENCH_WRK_PID=$!
    BENCH_WRK_PIDS+=("$BENCH_WRK_PID")
    BENCH_WRK_OUT_OF[$BENCH_WRK_PID]=$out
    BENCH_WRK_URL_OF[$BENCH_WRK_PID]=$url
}

# Waits for a wrk started by bench_wrk_start (default: the last one); dies if it failed.
# `wait` returns as soon as Ctrl-C arrives so the INT trap runs at once; a wrk in
# the foreground would swallow SIGINT (it prints its stats) and the script went on.
bench_wrk_wait() { # [pid]
    local pid=${1:-$BENCH_WRK_PID} rc=0 running=() other
    wait "$pid" || rc=$?
    for other in "${BENCH_WRK_PIDS[@]}"; do [[ $other == "$pid" ]] || running+=("$other"); done
    BENCH_WRK_PIDS=("${running[@]}")
    if ((rc != 0)); then
        cat "${BENCH_WRK_OUT_OF[$pid]}" >&2
        bench_die "the load tool failed (exit $rc) against ${BENCH_WRK_URL_OF[$pid]}"
    fi
}

# As bench_wrk_start, with oha (bench_ensure_oha first): ka keeps connections open, close
# opens one per request (--disable-keepalive: each a new TCP connection and, over HTTPS, a
# full handshake), post sends 16 KiB. Requests under way at the end are waited
# for (-w), not counted as errors. Sets BENCH_WRK_PID like bench_wrk_start.
bench_oha_start() { # cpus threads connections duration_s mode(ka|close|post) url outfile
    local cpus=$1 conns=$3 duration=$4 mode=$5 url=$6 out=$7
    local args=(--no-tui --output-format json -z "${duration}s" -c "$conns" -t 5s -w --insecure)
    case $mode in
    ka) ;;
    close) args+=(--disable-keepalive) ;;
    post) args+=(-m POST -D "$BENCH_WORKDIR/post-body.bin" -T application/octet-stream) ;;
    *) bench_die "unknown oha mode $mode" ;;
    esac
    # oha's runtime starts one thread per cpu it may run on, so taskset sizes it too.
    taskset -c "$cpus" "$BENCH_OHA" "${args[@]}" "$url" >"$out" 2>&1 &
    BENCH_WRK_PID=$!
    BENCH_WRK_PIDS+=("$BENCH_WRK_PID")
    BENCH_WRK_OUT_OF[$BENCH_WRK_PID]=$out
    BENCH_WRK_URL_OF[$BENCH_WRK_PID]=$url
}

# Prints "rps requests p50 p99 p999 err_status err_socket" (latency in µs) from oha's JSON:
# requests are the responses received, err_status those not 2xx/3xx, err_socket the errors
# (connect, read, timeouts).
bench_parse_oha() { # outfile
    python3 - "$1" <<'EOF' || bench_die "could not parse oha output $1"
import json, sys
report = json.load(open(sys.argv[1]))
codes = {int(k): v for k, v in report.get("statusCodeDistribution", {}).items()}
requests = sum(codes.values())
bad = sum(v for k, v in codes.items() if not 200 <= k < 400)
errors = sum(report.get("errorDistribution", {}).values())
total = report["summary"]["total"]
p = report["latencyPercentiles"]
us = lambda q: (p.get(q) or 0) * 1e6
print(f"{requests / total if total else 0:.2f} {requests} {us('p50'):.1f} {us('p99'):.1f} {us('p99.9'):.1f} {bad} {errors}")
EOF
}

# Same arguments as bench_wrk_start; returns when the run is over.
bench_wrk() {
    bench_wrk_start "$@"
    bench_wrk_wait
}

# Prints "rps requests p50 p99 p999 err_status err_socket" from a wrk output file.
bench_parse_wrk() {
    awk '
        /^Requests\/sec:/ { rps = $2 }
        /^BENCH_RESULT/ {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            found = 1
        }
        END {
            if (!found) exit 1
            if (rps == "") rps = (v["duration_us"] > 0 ? v["requests"] * 1e6 / v["duration_us"] : 0)
            printf "%s %d %s %s %s %d %d\n", rps, v["requests"], v["p50_us"], v["p99_us"], v["p999_us"],
                v["err_status"], v["err_connect"] + v["err_read"] + v["err_write"] + v["err_timeout"]
        }' "$1" || bench_die "could not parse wrk output $1"
}
