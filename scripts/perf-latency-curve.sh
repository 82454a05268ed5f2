#!/usr/bin/env bash
# acks=all, RF 3, linger.ms=0: latency against the rate, weir (one `weir cluster`, warm
# topic) and librdkafka's in-process mock cluster (the client's own ceiling) alternated at
# each rate, two runs each, so both see the same machine load. One line per run: records/s,
# p50, p99 and max latency in ms.
#
# Usage: scripts/perf-latency-curve.sh [RATE...]   (default 20000 40000 60000 80000 100000 190000)
# Env: WEIR (binary, default target/release/weir, built with --features perf).
set -euo pipefail
cd "$(dirname "$0")/.."
weir=${WEIR:-target/release/weir}
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(20000 40000 60000 80000 100000 190000)
data=$(mktemp -d /tmp/weir-latency-curve.XXXXXX)
WEIR_LOG=warn "$weir" cluster --base-port 0 --data-dir "$data/cluster" >"$data/out" 2>"$data/err" </dev/null &
cluster=$!
trap 'kill $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 300); do grep -q ready "$data/out" 2>/dev/null && break; sleep 0.2; done
bootstrap=$(grep listening "$data/out" | head -1 | awk '{print $NF}')
common=(--partitions 6 --replication-factor 3 --acks all --set linger.ms=0 --no-progress)
show() {
  python3 -c 'import json,sys
j=json.loads(sys.stdin.read().strip().splitlines()[-1]); l=j["latency_ms"]
print(round(j["records_per_s"]), "rec/s  p50", l["p50"], " p99", l["p99"], " max", l["max"])'
}
"$weir" perf produce --bootstrap "$bootstrap" "${common[@]}" --topic warm --records 100000 --rate 20000 >/dev/null 2>&1
for rate in "${rates[@]}"; do
  records=$((rate * 6)); [ $records -ge 200000 ] || records=200000
  for run in 1 2; do
    echo -n "weir rate=$rate  "
    "$weir" perf produce --bootstrap "$bootstrap" "${common[@]}" --topic warm --records $records --rate "$rate" 2>/dev/null | show
    echo -n "mock rate=$rate  "
    "$weir" perf produce --bootstrap unused:1 "${common[@]}" --set test.mock.num.brokers=3 \
      --topic "mock-$rate-$run" --records $records --rate "$rate" 2>/dev/null | show
  done
done
