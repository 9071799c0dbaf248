#!/usr/bin/env bash
# Runs `gatemeter demo`: builds what is needed on first use, then starts an
# in-process broker, the synthetic gateway and the ingester. Extra arguments
# go to the demo (e.g. --duration 30 --rate 500).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatemeter-target}"
GATEMETER_SETUP=build source scripts/setup.sh
cargo build --locked -p gatemeter --bin gatemeter
exec "$CARGO_TARGET_DIR/debug/gatemeter" demo "$@"
