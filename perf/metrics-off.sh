#!/usr/bin/env bash
# Stands in for a ringproxy binary in perf/ab.sh (or scripts/bench.sh --ringproxy-bin): runs
# $METRICS_OFF_BIN (default: this repository's target/release/ringproxy) with
# `[runtime] metrics = false` added to a copy of the --config file it is given, so that
#   perf/ab.sh --together target/release/ringproxy perf/metrics-off.sh
# measures what metrics cost in the same moment, on the same core.
set -euo pipefail
bin=${METRICS_OFF_BIN:-$(dirname "$0")/../target/release/ringproxy}
args=()
while (($#)); do
    if [[ $1 == --config && $# -gt 1 ]]; then
        grep -q '^\[runtime\]' "$2" && { echo "metrics-off.sh: $2 has a [runtime] table already" >&2; exit 2; }
        cp "$2" "$2.metrics-off"
        printf '\n[runtime]\nmetrics = false\n' >>"$2.metrics-off"
        args+=(--config "$2.metrics-off")
        shift 2
        continue
    fi
    args+=("$1")
    shift
done
exec "$bin" "${args[@]}"
