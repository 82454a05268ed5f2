#!/usr/bin/env bash
# Measures weir against librdkafka's in-process mock cluster in one run, alternating the two
# so that both see the same machine load, and prints each run's JSON line (from `weir perf`)
# with the CPU seconds the client and the broker process spent, then the median ratio.
#
# Usage: scripts/perf-compare.sh MODE PAIRS [weir perf args...]
#   e.g. scripts/perf-compare.sh produce 3 --records 5000000 --acks 1
# Env: WEIR (binary, default target/release/weir, built with --features perf),
#      WEIR_CLUSTER_ARGS (extra `weir cluster` args, default RF=1).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1; pairs=$2; shift 2
weir=${WEIR:-target/release/weir}
data=$(mktemp -d /tmp/weir-perf-compare.XXXXXX)
out=$(mktemp /tmp/weir-perf-compare-out.XXXXXX)
# shellcheck disable=SC2086
WEIR_LOG=warn "$weir" cluster --base-port 0 --data-dir "$data" \
  ${WEIR_CLUSTER_ARGS:---set default.replication.factor=1} >"$out" 2>"$data.log" &
cluster=$!
trap 'kill $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$data" "$data.log" "$out"' EXIT
for _ in $(seq 1 300); do grep -q '^ready$' "$out" && break; sleep 0.1; done
grep -q '^ready$' "$out" || { echo "the cluster did not start" >&2; cat "$data.log" >&2; exit 1; }
bootstrap=$(awk '/listening on/ {print $5}' "$out" | paste -sd,)
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
run() { # target-label, extra args...
  local label=$1; shift
  local before; before=$(cpu $cluster)
  local t0; t0=$(date +%s.%N)
  local line
  line=$(/usr/bin/time -f '%U %S' -o "$data.time" "$weir" perf "$mode" --no-progress "$@" 2>/dev/null | tail -1)
  local broker; broker=$(printf "%.2f" "$(echo "$(cpu $cluster) - $before" | bc)")
  local client; client=$(awk '{print $1 + $2}' "$data.time")
  echo "{\"run\":\"$label\",\"client_cpu_s\":$client,\"broker_cpu_s\":$broker,\"result\":$line}"
}
topic="compare-$$"
for i in $(seq 1 "$pairs"); do
  run mock --set test.mock.num.brokers=3 --topic "$topic-mock-$i" "$@"
  run weir --bootstrap "$bootstrap" --topic "$topic-$i" "$@"
done | tee "$data.lines"
python3 - "$data.lines" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mock = [r["result"]["records_per_s"] for r in runs if r["run"] == "mock"]
weir = [r["result"]["records_per_s"] for r in runs if r["run"] == "weir"]
ratios = [w / m for m, w in zip(mock, weir) if m]
wb = [r["broker_cpu_s"] / max(r["result"]["records"], 1) * 1e6 for r in runs if r["run"] == "weir"]
print(json.dumps({
    "mock_records_per_s_median": statistics.median(mock),
    "weir_records_per_s_median": statistics.median(weir),
    "ratio_median": round(statistics.median(ratios), 3),
    "ratios": [round(r, 3) for r in ratios],
    "weir_broker_cpu_s_per_million_records": round(statistics.median(wb), 3),
}))
PY
