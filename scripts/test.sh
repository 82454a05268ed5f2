#!/usr/bin/env bash
# Installs what weir's tests need on a fresh Debian machine (skipping what is already there),
# then runs the whole test suite. Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
[ -f /usr/share/java/zookeeper.jar ] || ls /usr/share/java/zookeeper*.jar >/dev/null 2>&1 || need_apt+=(zookeeper)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_apt+=(libcurl4-openssl-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

if ! python3 -c 'import confluent_kafka, kafka, aiokafka, snappy, lz4, zstandard, cramjam' >/dev/null 2>&1; then
  echo "installing Python Kafka clients (with their compression codecs)" >&2
  python3 -m pip install -q confluent-kafka 'kafka-python[lz4,snappy,zstd]' 'aiokafka[lz4,snappy,zstd]' >&2
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# `--features perf` builds `weir perf` (librdkafka is built for the tests anyway) so its test runs.
cargo nextest run --all-targets --features perf --no-fail-fast "$@"
cargo test --doc --quiet
