#!/usr/bin/env bash
# Broker CPU per acks=all produce request at linger.ms=0 (benches/README.md, "Broker CPU per
# acks=all request").
#
#   scripts/perf-request-cost.sh WEIR_BINARY LABEL [RATE] [RECORDS]
#
# Starts `weir cluster` (3 brokers, metrics on free ports) from WEIR_BINARY, creates and warms
# topic t (6 partitions, RF 3) with an unmeasured run, then runs `weir perf produce --acks all
# --set linger.ms=0 --rate RATE` and prints one line: the cluster process's CPU seconds
# (/proc/PID/stat utime+stime) over the run, the Produce requests the brokers served
# (weir_requests_total), CPU per request, and the client's records/s and latency. The client
# is $WEIR_PERF (default: WEIR_BINARY), so two broker builds can be compared with one client.
set -euo pipefail
BIN=$1; LABEL=$2; RATE=${3:-100000}; RECORDS=${4:-1000000}
CLIENT=${WEIR_PERF:-$BIN}
D=$(mktemp -d /tmp/weir-reqcost-XXXX)
OUT=$D/cluster.out
"$BIN" cluster --base-port 0 --data-dir "$D/data" --set metrics.port=0 >"$OUT" 2>"$D/cluster.err" &
PID=$!
trap 'kill -INT $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 1 300); do grep -q '^ready' "$OUT" && break; sleep 0.1; done
BOOT=$(grep -m1 'listening on' "$OUT" | awk '{print $NF}')
perf_run() {
  "$CLIENT" perf produce --bootstrap "$BOOT" --topic t --partitions 6 --replication-factor 3 \
    --acks all --set linger.ms=0 --no-progress "$@"
}
perf_run --records 200000 --rate "$RATE" >/dev/null 2>&1
sleep 1
cpu() { awk '{print $14+$15}' "/proc/$PID/stat"; }
requests() {
  for u in $(grep -o 'metrics on http://[^ ]*' "$OUT" | awk '{print $3}'); do curl -s "$u"; done |
    awk '/^weir_requests_total\{api="Produce"\}/{s+=$2} END{print s+0}'
}
C0=$(cpu); R0=$(requests)
perf_run --records "$RECORDS" --rate "$RATE" >"$D/run.json" 2>/dev/null
C1=$(cpu); R1=$(requests)
python3 - "$LABEL" "$C0" "$C1" "$R0" "$R1" "$(getconf CLK_TCK)" "$D/run.json" <<'PY'
import json, sys
label, c0, c1, r0, r1, tck, path = sys.argv[1:]
cpu = (int(c1) - int(c0)) / int(tck)
reqs = int(r1) - int(r0)
j = json.loads(open(path).read().strip().splitlines()[-1])
l = j["latency_ms"]
print(f"{label}: cpu {cpu:.2f} s, {reqs} produce requests, {1e6 * cpu / max(reqs, 1):.1f} us/request, "
      f"{j['records_per_s']:.0f} rec/s, p50 {l['p50']} ms, p99 {l['p99']} ms, max {l['max']} ms, errors {j['errors']}")
PY
