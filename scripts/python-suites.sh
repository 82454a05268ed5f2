#!/usr/bin/env bash
# Runs the Python Kafka clients' own integration tests (the projects' tests, not weir's) against
# a fresh `weir cluster`. Not part of CI: it downloads the clients' sources from PyPI.
#
#   scripts/python-suites.sh                 # kafka-python's test/integration, minus the skips below
#   WEIR=path/to/weir scripts/python-suites.sh -k consumer    # extra args go to pytest
#
# Only kafka-python's sdist ships its tests; confluent-kafka's and aiokafka's sdists prune
# tests/ (MANIFEST.in), so there is nothing of theirs to run from PyPI.
#
# Sources, venv, cluster data and logs live under $PYSUITES_DIR (default /tmp/weir-python-suites),
# outside the repository: the clients' code is never copied into weir.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${PYSUITES_DIR:-/tmp/weir-python-suites}"
kafka_python_version="${KAFKA_PYTHON_VERSION:-3.0.12}"
weir="${WEIR:-${CARGO_TARGET_DIR:-$repo/target}/release/weir}"
mkdir -p "$work"

if [ ! -x "$weir" ]; then
  echo "building weir (release)" >&2
  (cd "$repo" && cargo build --release)
fi

venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q pytest pytest-timeout pytest-mock \
  "kafka-python[lz4,snappy,zstd]==$kafka_python_version" >&2

src="$work/kafka_python-$kafka_python_version"
if [ ! -d "$src/test/integration" ]; then
  (cd "$work" && "$venv/bin/python" -m pip download -q --no-binary :all: --no-deps \
    "kafka-python==$kafka_python_version" -d "$work" >&2)
  tar -xzf "$work/kafka_python-$kafka_python_version.tar.gz" -C "$work"
fi
# Glue, not assertions: the sdist lacks test/__init__.py (without it Python's own `test`
# package shadows theirs) and test/service.py (see the file's docstring).
touch "$src/test/__init__.py"
cp "$repo/scripts/python-suites/kafka_python_service.py" "$src/test/service.py"
mkdir -p "$work/kafka-root" # the fixtures insist that KAFKA_ROOT exists, even for an external broker

# A fresh weir with the broker settings of kafka-python's own fixture
# (servers/resources/default/kafka.properties upstream) where weir's defaults differ:
# Kafka's min.insync.replicas=1 (weir's cluster defaults to 2; the tests create RF=1 topics
# and produce with acks=all), 4 partitions, session timeouts down to 1 s, no initial
# rebalance delay. PYSUITES_MODE=cluster (default): `weir cluster`, 3 brokers in one process.
# PYSUITES_MODE=broker: one `weir broker` with broker.id=0 on a `weir coordinator`, the shape
# of kafka-python's fixture (a single broker 0).
mode="${PYSUITES_MODE:-cluster}"
data="$work/$mode-data"
rm -rf "$data"; mkdir -p "$data"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # $1: stdout file, $2: pid
  for _ in $(seq 1 300); do
    grep -q '^ready$' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "${1%.out}.err" >&2; exit 1; }
    sleep 0.1
  done
  echo "weir not ready in 30 s (see ${1%.out}.err)" >&2; exit 1
}
fixture_settings=(min.insync.replicas=1 num.partitions=4 group.min.session.timeout.ms=1000
  group.initial.rebalance.delay.ms=0)
case "$mode" in
  cluster)
    sets=(); for kv in "${fixture_settings[@]}"; do sets+=(--set "$kv"); done
    # stdin is the fault console: keep it open (and silent) on a fifo for the run
    mkfifo "$data/stdin"
    "$weir" cluster --base-port 0 --data-dir "$data" "${sets[@]}" \
      <"$data/stdin" >"$data/cluster.out" 2>"$data/cluster.err" &
    pids+=($!)
    exec 3>"$data/stdin"
    wait_ready "$data/cluster.out" "${pids[-1]}"
    bootstrap="$(sed -n 's/^broker 1 listening on //p' "$data/cluster.out")"
    ;;
  broker)
    coord_port="$(free_port)"; kafka_port="$(free_port)"
    "$weir" coordinator --listen "127.0.0.1:$coord_port" --data-dir "$data/coordinator" \
      >"$data/coordinator.out" 2>"$data/coordinator.err" &
    pids+=($!)
    for _ in $(seq 1 300); do # it prints nothing: wait for its port
      (exec 4<>"/dev/tcp/127.0.0.1/$coord_port") 2>/dev/null && break
      sleep 0.1
    done
    { echo "broker.id=0"
      echo "zookeeper.connect=weir://127.0.0.1:$coord_port/kafka-python"
      echo "listeners=PLAINTEXT://127.0.0.1:$kafka_port"
      echo "log.dirs=$data/broker-0"
      echo "default.replication.factor=1"
      echo "offsets.topic.replication.factor=1"
      printf '%s\n' "${fixture_settings[@]}"
    } >"$data/broker.properties"
    "$weir" broker --config "$data/broker.properties" >"$data/broker.out" 2>"$data/broker.err" &
    pids+=($!)
    wait_ready "$data/broker.out" "${pids[-1]}"
    bootstrap="127.0.0.1:$kafka_port"
    ;;
  *) echo "PYSUITES_MODE is cluster or broker, not $mode" >&2; exit 2 ;;
esac
echo "weir ($mode) up: $bootstrap (logs: $data/*.err)" >&2

# Left out, each for a reason weir has (the rest of test/integration runs):
deselect=(
  # SASL and SSL: weir serves PLAINTEXT only.
  --ignore=test/integration/test_sasl_integration.py
  --ignore=test/integration/test_ssl_integration.py
  # Transactions: weir refuses a transactional.id at once.
  --deselect=test/integration/test_producer_integration.py::test_transactional_producer_messages
  --deselect=test/integration/test_producer_integration.py::test_transactional_producer_offsets
  # ACLs: the fixture runs Kafka with an authorizer; weir has none and answers
  # SECURITY_DISABLED, as Kafka without one does.
  --deselect=test/integration/test_admin_integration.py::test_create_describe_delete_acls
  # AlterPartitionReassignments: weir does not move replicas (not even to the same set).
  --deselect=test/integration/test_admin_integration.py::test_alter_partition_reassignments
)
if [ "$mode" = cluster ]; then
  deselect+=(
    # Hard-codes broker id 0 (its single fixture broker) in the new partitions' replica
    # assignment; weir cluster's brokers are 1..N.
    --deselect=test/integration/test_admin_integration.py::test_create_partitions
    # Assumes one broker: it expects a single poll() to return the records of six partitions,
    # but with their leaders on three brokers poll() returns once the first fetch answers.
    --deselect=test/integration/test_admin_integration.py::test_delete_records
    # Pins partition 0's replica on the first broker that answers DescribeLogDirs, which holds
    # it only when there is one broker (else REPLICA_NOT_AVAILABLE, as from Kafka).
    --deselect=test/integration/test_admin_integration.py::test_alter_replica_log_dirs
  )
fi

cd "$src"
KAFKA_VERSION=3.7.0 KAFKA_URI="PLAINTEXT://$bootstrap" KAFKA_ROOT="$work/kafka-root" \
  "$venv/bin/python" -m pytest test/integration -p no:cacheprovider -o addopts="" \
  --timeout=120 --timeout-method=signal -rfEs -W ignore::DeprecationWarning "${deselect[@]}" "$@"
