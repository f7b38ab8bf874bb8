#!/usr/bin/env bash
# HAProxy behind ringproxy's command line, for an A/A run that measures the noise of
# the benchmark itself: `scripts/bench.sh --ringproxy-bin scripts/lib/haproxy-as-ringproxy.sh`
# compares HAProxy with itself, so every "ringproxy vs haproxy" ratio should be 1.00
# and what it is instead is the noise. Accepts --listen, --upstream, --workers, --cpus.
set -euo pipefail
# shellcheck source=scripts/lib/bench-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-common.sh"

listen="" upstream="" workers=1 cpus=""
while (($# >= 2)); do
    case $1 in
    --listen) listen=$2 ;;
    --upstream) upstream=$2 ;;
    --workers) workers=$2 ;;
    --cpus) cpus=$2 ;;
    *) echo "haproxy-as-ringproxy: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
[[ -n $listen && -n $upstream ]] || { echo "usage: $0 --listen ADDR --upstream ADDR [--workers N] [--cpus LIST]" >&2; exit 2; }

config=$(bench_haproxy_config "$listen" "$upstream" "$cpus" "$workers")
echo "ringproxy: ready ($workers workers)" >&2
# The config goes in through stdin so nothing is left behind after exec.
exec haproxy -db -f /dev/stdin <<<"$config"
