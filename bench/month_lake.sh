#!/usr/bin/env bash
# A real month of raw attempts (not a test): the lake behind the 100M
# figures of BENCHMARKS.md, "A real month of 100M raw attempts".
#
# usage: bench/month_lake.sh LAKE [DAYS] [REQUESTS_PER_DAY]
#
# Produces DAYS days of synthetic traffic from 2026-11-01 (default 30 days
# of 3,000,000 requests: about 100M attempts with 2% duplicates and 1%
# corrections), one day at a time: the day's JSON lines are written to a
# file, imported by `gatemeter import` and deleted (import re-reads a file
# after a lost commit race, so it takes regular files only); then `gatemeter
# compact` runs once over the whole month. Each stage is timed with
# /usr/bin/time -v; the logs land in LAKE.logs/.
#
# Set GATEMETER_BIN to the (release) binary; the default is `gatemeter` on
# PATH. A day already imported is skipped (its log holds "stored").
set -euo pipefail

lake=${1:?usage: bench/month_lake.sh LAKE [DAYS] [REQUESTS_PER_DAY]}
days=${2:-30}
per_day=${3:-3000000}
bin=${GATEMETER_BIN:-gatemeter}
prices=${GATEMETER_PRICES:-config/prices.csv}
logs="$lake.logs"
mkdir -p "$logs"
# Requests per second of event time that spread per_day over 86,400 s.
rate=$(python3 -c "print($per_day / 86400)")

for day in $(seq 1 "$days"); do
  name=$(printf 'day-%02d' "$day")
  if grep -qs 'stored' "$logs/$name.import"; then continue; fi
  start=$(date -u -d "2026-11-01 +$((day - 1)) days" +%Y-%m-%dT00:00:00Z)
  events="$logs/$name.jsonl"
  /usr/bin/time -v "$bin" produce --rate 0 --count "$per_day" --simulated-rate "$rate" --seed "$day" \
    --duplicates 0.02 --corrections 0.01 --start "$start" --output "$events" \
    > "$logs/$name.produce" 2>&1
  /usr/bin/time -v "$bin" --data-dir "$lake" --prices "$prices" import "$events" \
    > "$logs/$name.import" 2>&1
  rm -f "$events"
  echo "$name: $(grep -h 'stored' "$logs/$name.import" | tail -1)"
done

/usr/bin/time -v "$bin" --data-dir "$lake" --prices "$prices" compact > "$logs/compact" 2>&1
tail -n 30 "$logs/compact"
