#!/usr/bin/env bash
# HAProxy behind ringproxy's command line, for an A/A run that measures the noise of
# the benchmark itself: `scripts/bench.sh --ringproxy-bin scripts/lib/haproxy-as-ringproxy.sh`
# compares HAProxy with itself, so every "ringproxy vs haproxy" ratio should be 1.00
# and what it is instead is the noise.
#
# Accepts --listen/--upstream (perf/ab.sh's start) or --config FILE (scripts/bench.sh's), plus
# --workers and --cpus. Of a config it understands what bench-common.sh writes: plain and TLS
# listeners, one upstream group, TLS to the backend (a listener whose group has `tls.ca`) and
# `[access_log] path` (HAProxy's `option httplog` lines appended to that file). `[admin]` is
# ignored: bench.sh then prints no ringproxy TLS counters for the handshake rows.
set -euo pipefail
# shellcheck source=scripts/lib/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

die() { echo "haproxy-as-ringproxy: $*" >&2; exit 2; }

listen="" upstream="" workers=1 cpus="" config=""
while (($# >= 2)); do
    case $1 in
    --listen) listen=$2 ;;
    --upstream) upstream=$2 ;;
    --workers) workers=$2 ;;
    --cpus) cpus=$2 ;;
    --config) config=$2 ;;
    *) die "unknown option $1" ;;
    esac
    shift 2
done
(($# == 0)) || die "option $1 needs a value"

# What the config asks for, one line each: "listen ADDR", "tls ADDR CERT KEY",
# "backend-tls ADDR CA", "upstream ADDR", "access-log PATH".
config_lines() { # file
    python3 - "$1" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    cfg = tomllib.load(f)
unknown = set(cfg) - {"listener", "upstream", "access_log", "admin"}
if unknown:
    sys.exit(f"sections it cannot translate: {sorted(unknown)}")
groups = cfg.get("upstream", {})
for listener in cfg.get("listener", []):
    group = groups.get(listener.get("upstream", "default"), {})
    if "tls" in listener:
        print("tls", listener["address"], listener["tls"]["cert"], listener["tls"]["key"])
    elif "tls" in group:
        print("backend-tls", listener["address"], group["tls"]["ca"])
    else:
        print("listen", listener["address"])
backends = groups.get("default", {}).get("backends", [])
if len(backends) != 1:
    sys.exit("needs [upstream.default] with one backend")
print("upstream", backends[0])
if "access_log" in cfg:
    print("access-log", cfg["access_log"]["path"])
EOF
}

tls_binds=() access_log="" backend_tls_addr=""
if [[ -n $config ]]; then
    lines=$(config_lines "$config") || die "$config: cannot translate it"
    pem_dir=$(dirname "$config")
    while read -r kind addr rest; do
        case $kind in
        listen) listen=$addr ;;
        upstream) upstream=$addr ;;
        access-log) access_log=$addr ;;
        tls)
            # HAProxy wants the certificate and its key in one file; it stays in the
            # bench's work dir, which the bench removes.
            pem="$pem_dir/haproxy-${addr##*:}.pem"
            read -r cert key <<<"$rest"
            cat "$cert" "$key" >"$pem"
            tls_binds+=("$addr $pem")
            ;;
        backend-tls)
            # bench_haproxy_config puts that frontend at the listen port + the offset.
            BENCH_BACKEND_CA=$rest
            backend_tls_addr=$addr
            ;;
        esac
    done <<<"$lines"
    if [[ -n $BENCH_BACKEND_CA && $backend_tls_addr != "${listen%:*}:$((${listen##*:} + BENCH_BACKEND_TLS_OFFSET))" ]]; then
        die "the TLS-to-backend listener $backend_tls_addr is not at the listen port + $BENCH_BACKEND_TLS_OFFSET"
    fi
fi
[[ -n $listen && -n $upstream ]] ||
    die "usage: $0 (--listen ADDR --upstream ADDR | --config FILE) [--workers N] [--cpus LIST]"

haproxy_config=$(bench_haproxy_config "$listen" "$upstream" "$cpus" "$workers" "${tls_binds[@]}")
if [[ -n $access_log ]]; then
    log_lines=$'    option httplog\n    log stdout format raw local0\n'
    haproxy_config=${haproxy_config/$'frontend proxy\n'/$'frontend proxy\n'$log_lines}
    exec >>"$access_log"
fi
echo "ringproxy: ready ($workers workers)" >&2
# The config goes in through stdin so nothing is left behind after exec.
exec haproxy -db -f /dev/stdin <<<"$haproxy_config"
