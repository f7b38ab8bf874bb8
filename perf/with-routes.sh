#!/usr/bin/env bash
# Runs a ringproxy binary with the listener's traffic going through a route table of N
# routes instead of `--upstream`, for perf/ab.sh (which starts proxies with `--listen ADDR
# --upstream BACKEND --workers W --cpus C`). The first N-1 routes do not take the bench's
# requests (each names its own host and path, as a large virtual-host table would); the
# last, `path_prefix = "/"`, proxies them. With N = 1 the table is that one route.
#
#   perf/with-routes.sh N BIN --listen ADDR --upstream BACKEND [other flags]
#
# perf/ab.sh takes a binary path, so wrap it in a two-line script, e.g.
#   printf '#!/bin/sh\nexec perf/with-routes.sh 1000 target/release/ringproxy "$@"\n' >r1000
set -euo pipefail

routes=$1 bin=$2
shift 2
listen="" upstream="" rest=()
while (($#)); do
    case $1 in
    --listen) listen=$2; shift 2 ;;
    --upstream) upstream=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
    esac
done
[[ -n $listen && -n $upstream ]] || { echo "with-routes.sh: needs --listen and --upstream" >&2; exit 2; }

# exec, so that perf/ab.sh measures ringproxy's own process: the config stays behind, one
# file per table size and port, rewritten by the next run.
config=/tmp/ringproxy-routes-$routes-${listen##*:}.toml
{
    printf '[[listener]]\naddress = "%s"\nroutes = "main"\n\n' "$listen"
    printf '[upstream.app]\nbackends = ["%s"]\n\n' "$upstream"
    for ((i = 1; i < routes; i++)); do
        printf '[[routes.main.route]]\nhost = "h%d.example.com"\npath_prefix = "/p%d"\nupstream = "app"\n' "$i" "$i"
    done
    printf '[[routes.main.route]]\npath_prefix = "/"\nupstream = "app"\n'
} >"$config"
exec "$bin" --config "$config" "${rest[@]}"
