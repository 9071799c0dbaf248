#!/usr/bin/env bash
# Installs what gatemeter needs, idempotently: a warm machine pays nothing,
# a fresh one gets everything. Sourced by scripts/test.sh (everything) and
# scripts/demo.sh (`GATEMETER_SETUP=build`: only what the build needs).
set -euo pipefail
GATEMETER_SETUP="${GATEMETER_SETUP:-all}"

APT_PACKAGES=(build-essential pkg-config zlib1g-dev libssl-dev python3)
# Real peers the tests start: Prometheus, promtool and Alertmanager.
TEST_APT_PACKAGES=(prometheus prometheus-alertmanager postgresql-client openssl)
PY_PACKAGES=(duckdb==2.0.0 "psycopg[binary]==3.3.9" confluent-kafka==2.16.1 pytest==9.2.0 pyarrow==26.0.1 openapi-spec-validator==0.9.0 pyyaml==6.0.3 deltalake==1.6.6 moto[server]==5.2.5)
TANSU_VERSION=0.6.0
VENV="${GATEMETER_VENV:-$HOME/.cache/gatemeter-venv}"

log() { printf '[setup] %s\n' "$*" >&2; }

wanted_apt=("${APT_PACKAGES[@]}")
[ "$GATEMETER_SETUP" = "build" ] || wanted_apt+=("${TEST_APT_PACKAGES[@]}")
missing_apt=()
for pkg in "${wanted_apt[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing_apt+=("$pkg")
done
if [ ${#missing_apt[@]} -gt 0 ]; then
  log "apt-get install ${missing_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing_apt[@]}"
fi

if [ "$GATEMETER_SETUP" = "build" ]; then
  return 0 2>/dev/null || exit 0
fi

# The format and lint checks of the suite.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "rustup component add rustfmt clippy"
  rustup component add rustfmt clippy
fi

if ! command -v tansu >/dev/null 2>&1 || ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  log "cargo install tansu $TANSU_VERSION (a real Kafka-protocol broker; takes a while once)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "python venv at $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" - "${PY_PACKAGES[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    if version(name.split("[")[0]) != wanted:
        sys.exit(1)
PY
then
  log "pip install ${PY_PACKAGES[*]}"
  "$VENV/bin/pip" install -q "${PY_PACKAGES[@]}"
fi
export PATH="$VENV/bin:$HOME/.cargo/bin:$PATH"
