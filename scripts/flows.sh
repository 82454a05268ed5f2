#!/usr/bin/env bash
# Regenerates docs/flows/ from real runs: every `weir demo` on an in-process cluster, its
# narrative, trace and Mermaid diagram. Fails if a diagram misses a message its case names.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -- demo all --out docs/flows
