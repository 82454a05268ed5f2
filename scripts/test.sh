#!/usr/bin/env bash
# Installs what weir's tests need on a fresh Debian machine (skipping what is already there),
# then runs the whole test suite. Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
[ -f /usr/share/java/zookeeper.jar ] || ls /usr/share/java/zookeeper*.jar >/dev/null 2>&1 || need_apt+=(zookeeper)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_apt+=(libcurl4-openssl-dev)
# `ip netns` for the multi-node link-cut test (it runs as root, as CI does).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# tests/it/slow_disk.rs: a throttled ext4 on a loop device
command -v mkfs.ext4 >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need_apt+=(mount)
# A real headless browser for the console's tests (tests/it/ui.rs), driven via chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

# The Python clients. A distribution's python3 is "externally managed" (PEP 668: Debian 12
# refuses `pip install` into it), so when python3 lacks them they go into a virtualenv under
# the target dir, which then comes first on PATH for the tests (they run `python3`).
venv="${CARGO_TARGET_DIR:-$PWD/target}/test-venv"
[ -x "$venv/bin/python3" ] && export PATH="$venv/bin:$PATH"
python_clients='import confluent_kafka, kafka, aiokafka, snappy, lz4, zstandard, cramjam'
if ! python3 -c "$python_clients" >/dev/null 2>&1; then
  echo "installing Python Kafka clients (with their compression codecs) into $venv" >&2
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  export PATH="$venv/bin:$PATH"
  python3 -m pip install -q confluent-kafka 'kafka-python[lz4,snappy,zstd]' 'aiokafka[lz4,snappy,zstd]' >&2
  python3 -c "$python_clients"
fi

# KafkaJS (tests/it/kafka_clients/kafkajs.rs): a pure-JavaScript client, installed with npm
# under the target dir; the test points NODE_PATH at it.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  echo "installing Node.js and npm" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >&2
}
node_dir="${CARGO_TARGET_DIR:-$PWD/target}/test-node"
if [ ! -f "$node_dir/node_modules/kafkajs/package.json" ]; then
  echo "installing kafkajs into $node_dir" >&2
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --no-save --silent kafkajs@2.2.4 >&2
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# `--features perf` builds `weir perf` (librdkafka is built for the tests anyway) so its test runs.
cargo nextest run --all-targets --features perf --no-fail-fast "$@"
cargo test --doc --quiet
