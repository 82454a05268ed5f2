#!/usr/bin/env bash
# Scale probe: for each partition count, a fresh `weir cluster` (3 brokers in one process) and
# one topic with that many partitions at replication factor RF (default 1). Prints, one line
# per count:
#   setup_s        CreateTopics -> every leader known (as `weir perf` waits for it, client
#                  start included)
#   produce        records/s of 2 M x 100 B, acks=1
#   idle_cpu_pct   CPU of the process over 10 s after the load
#   rss_kib, open_files, maps   of the process (RSS without the page cache)
#   failover_s     (RF > 1 only) `crash 1` on the fault console -> the status shows every
#                  partition led by a live broker again; includes the controller noticing
#                  the crash (broker 1's coordination session is abandoned, so it expires
#                  after zookeeper.session.timeout.ms, 18 s by default, unless FAILOVER_SETS
#                  lowers it)
# The process keeps the open-file limit of the shell (`ulimit -Hn`; weir raises the soft
# limit to it) and Linux's vm.max_map_count.
#
# Usage: [RF=3] [KEEP=1] scripts/perf-scale.sh 10 1000 10000
#   WEIR: a binary built with --features perf; KEEP: keep each run's dir (logs) for a look.
#   WEIR_LOG: the cluster's log filter (default warn; e.g. warn,weir::actors::broker=debug).
set -u
cd "$(dirname "$0")/.."
weir=${WEIR:-target/release/weir}
rf=${RF:-1}
records=${RECORDS:-2000000}
for p in "$@"; do
  d=$(mktemp -d /tmp/weir-scale.XXXXXX)
  mkfifo "$d/in"
  # shellcheck disable=SC2086
  WEIR_LOG=${WEIR_LOG:-warn} "$weir" cluster --base-port 0 --data-dir "$d/data" \
    --set default.replication.factor="$rf" ${FAILOVER_SETS:-} <"$d/in" >"$d/out" 2>"$d/err" &
  pid=$!
  exec 3>"$d/in"
  for _ in $(seq 1 600); do grep -q '^ready$' "$d/out" && break; sleep 0.1; done
  bootstrap=$(awk '/listening on/ {print $5}' "$d/out" | paste -sd,)
  t0=$(date +%s.%N)
  timeout 600 "$weir" perf produce --bootstrap "$bootstrap" --topic s --partitions "$p" \
    --replication-factor "$rf" --records 1 --acks 1 --no-progress >/dev/null 2>"$d/setup" ||
    echo "partitions=$p: setup failed: $(tail -1 "$d/setup")"
  t1=$(date +%s.%N)
  rps=$(timeout 600 "$weir" perf produce --bootstrap "$bootstrap" --topic s --partitions "$p" \
    --records "$records" --acks 1 --no-progress 2>"$d/produce" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["records_per_s"])' 2>/dev/null || echo failed)
  c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); sleep 10; c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  line="partitions=$p rf=$rf setup_s=$(echo "$t1 - $t0" | bc) produce_records_per_s=$rps"
  line+=" idle_cpu_pct=$(echo "scale=1; ($c1 - $c0) / 10" | bc)"
  line+=" rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
  line+=" open_files=$(ls "/proc/$pid/fd" | wc -l) maps=$(wc -l <"/proc/$pid/maps")"
  if [ "$rf" -gt 1 ]; then
    # Fail broker 1, then ask for the status until no partition of `s` is led by it or
    # offline (each answer is one JSON line on stdout).
    f0=$(date +%s.%N)
    echo "crash 1" >&3
    failover=timeout
    for _ in $(seq 1 1200); do
      n=$(wc -l <"$d/out")
      echo status >&3
      for _ in $(seq 1 100); do [ "$(wc -l <"$d/out")" -gt "$n" ] && break; sleep 0.05; done
      if sed -n "$((n + 1))p" "$d/out" | python3 -c '
import json, sys
s = json.loads(sys.stdin.readline())
parts = [q for q in s["partitions"] if q["topic"] == "s"]
sys.exit(0 if parts and all(q["leader"] not in (-1, 1) for q in parts) else 1)' 2>/dev/null; then
        failover=$(echo "$(date +%s.%N) - $f0" | bc)
        break
      fi
      sleep 0.2
    done
    line+=" failover_s=$failover"
  fi
  line+=" errors_logged=$(grep -c ERROR "$d/err")"
  echo "$line"
  exec 3>&-
  kill "$pid"; wait "$pid" 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $d"; else rm -rf "$d"; fi
done
