#!/usr/bin/env bash
# Scale probe: for each partition count, a fresh `weir cluster` (RF=1) and one topic with that
# many partitions; prints the time from CreateTopics to every leader known (as `weir perf`
# waits for it, client start included), produce throughput (2 M x 100 B, acks=1), idle CPU
# over 10 s, RSS (without the page cache), open files and memory maps of the process.
#
# Usage: scripts/perf-scale.sh 10 1000 10000   (WEIR: a binary built with --features perf)
set -u
cd "$(dirname "$0")/.."
weir=${WEIR:-target/release/weir}
for p in "$@"; do
  d=$(mktemp -d /tmp/weir-scale.XXXXXX)
  WEIR_LOG=warn "$weir" cluster --base-port 0 --data-dir "$d/data" \
    --set default.replication.factor=1 >"$d/out" 2>"$d/err" &
  pid=$!
  for _ in $(seq 1 300); do grep -q '^ready$' "$d/out" && break; sleep 0.1; done
  bootstrap=$(awk '/listening on/ {print $5}' "$d/out" | paste -sd,)
  t0=$(date +%s.%N)
  timeout 300 "$weir" perf produce --bootstrap "$bootstrap" --topic s --partitions "$p" \
    --records 1 --acks 1 --no-progress >/dev/null 2>"$d/setup" || echo "partitions=$p: setup failed: $(tail -1 "$d/setup")"
  t1=$(date +%s.%N)
  rps=$(timeout 300 "$weir" perf produce --bootstrap "$bootstrap" --topic s --partitions "$p" \
    --records 2000000 --acks 1 --no-progress 2>"$d/produce" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["records_per_s"])' 2>/dev/null || echo failed)
  c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); sleep 10; c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  echo "partitions=$p setup_s=$(echo "$t1 - $t0" | bc) produce_records_per_s=$rps" \
    "idle_cpu_pct=$(echo "scale=1; ($c1 - $c0) / 10" | bc)" \
    "rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")" \
    "open_files=$(ls "/proc/$pid/fd" | wc -l) maps=$(wc -l <"/proc/$pid/maps")" \
    "errors_logged=$(grep -c ERROR "$d/err")"
  kill "$pid"; wait "$pid" 2>/dev/null
  rm -rf "$d"
done
