#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), checks
# the format and lints (warnings fail), builds once, runs the Rust tests,
# then the end-to-end tests against a real tansu broker, DuckDB and the
# real gatemeter binary.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatemeter-target}"
source scripts/setup.sh

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build"
cargo build --workspace --all-targets --locked

echo "== rust tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== end-to-end tests"
export GATEMETER_BIN="$CARGO_TARGET_DIR/debug/gatemeter"
python -m pytest tests/e2e -q -p no:cacheprovider "$@"
