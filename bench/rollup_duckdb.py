#!/usr/bin/env python3
"""DuckDB over raw Parquet at 100M attempts (not a test): the other side of
the rollup benchmark (BENCHMARKS.md, "Rollups").

Takes a lake holding one compacted hour (the one `rollup_bench` reads its
stored rollups from), links its committed attempt file COPIES times into a
folder (links, not copies: the same bytes, hot in the page cache, as a
dashboard's repeated reads would find them), and times in DuckDB, hot (one
warm-up, then RUNS runs, median), queries over all of them:

- spend month to date, by team, and by team and day: `sum(cost_usd)` of
  the stored attempts, the reported cost only;
- latency p50/p95/p99 by model: attempt durations of successful attempts;
- retry amplification by provider: attempts per distinct request.

Each is a lower bound on what DuckDB would do for the KPI: no pricing of
unreported costs from the price book, no deduplication, no roll-up of
attempts into requests. A ratio against gatemeter's rollups measured this
way understates gatemeter's advantage.

With COPIES 0 it reads the lake's own committed attempt files instead
(a real lake such as the one bench/month_lake.sh builds), each once, and
times as well each request of `rollup_bench --existing` over its own
window (ending at the midnight after the lake's last request start), in
the same lower-bound form: attempts for requests, attempt duration for
end-to-end latency, success of the attempt for a good request.

usage: bench/rollup_duckdb.py LAKE COPIES [RUNS]
"""

import json
import pathlib
import statistics
import sys
import tempfile
import time

import duckdb
from deltalake import DeltaTable

QUERIES = [
    ("spend month to date", """
        SELECT sum(cost_usd) AS spend_usd FROM attempts"""),
    ("spend by team", """
        SELECT team, sum(cost_usd) AS spend_usd FROM attempts GROUP BY team"""),
    ("spend by team and day", """
        SELECT date_trunc('day', request_start) AS day, team, sum(cost_usd) AS spend_usd
        FROM attempts GROUP BY 1, 2"""),
    ("latency p50/p95/p99 by model", """
        SELECT requested_model,
               quantile_cont(epoch_ms(attempt_end) - epoch_ms(attempt_start), [0.5, 0.95, 0.99]) AS ms
        FROM attempts WHERE outcome = 'success' GROUP BY requested_model"""),
    ("retry amplification by provider", """
        SELECT provider, count(*) / count(DISTINCT request_id) AS retry_amplification
        FROM attempts GROUP BY provider"""),
]

# `rollup_bench --existing`'s requests, each over its window before {end}.
WINDOWED = [
    ("latency p50/p95/p99 by model and hour, 1 d", """
        SELECT requested_model, date_trunc('hour', request_start) AS hour,
               quantile_cont(epoch_ms(attempt_end) - epoch_ms(attempt_start), [0.5, 0.95, 0.99]) AS ms
        FROM attempts WHERE outcome = 'success' AND {window_1d} GROUP BY 1, 2"""),
    ("error-budget burn by team and hour, 1 d", """
        SELECT team, date_trunc('hour', request_start) AS hour,
               (1 - count(*) FILTER (WHERE outcome = 'success') / count(*)) / 0.001 AS burn
        FROM attempts WHERE {window_1d} GROUP BY 1, 2"""),
    ("retry amplification by provider and day, 7 d", """
        SELECT provider, date_trunc('day', request_start) AS day,
               count(*) / count(DISTINCT request_id) AS retry_amplification
        FROM attempts WHERE {window_7d} GROUP BY 1, 2"""),
    ("cost per successful outcome by key and day, 7 d", """
        SELECT api_key_id, date_trunc('day', request_start) AS day,
               sum(cost_usd) / count(*) FILTER (WHERE outcome = 'success') AS cost_per_outcome
        FROM attempts WHERE {window_7d} GROUP BY 1, 2"""),
    ("spend by team, 30 d", """
        SELECT team, sum(cost_usd) AS spend_usd FROM attempts WHERE {window_30d} GROUP BY team"""),
    ("one-day one-team drill-down (search, by provider and hour)", """
        SELECT provider, date_trunc('hour', request_start) AS hour, count(*) AS attempts,
               sum(cost_usd) AS spend_usd,
               quantile_cont(epoch_ms(attempt_end) - epoch_ms(attempt_start), 0.99) AS p99_ms
        FROM attempts WHERE team = 'search' AND {window_1d} GROUP BY 1, 2"""),
    ("spend by team and day, 30 d", """
        SELECT date_trunc('day', request_start) AS day, team, sum(cost_usd) AS spend_usd
        FROM attempts WHERE {window_30d} GROUP BY 1, 2"""),
]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.split("usage: ")[1])
    lake, copies = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) == 4 else 3
    files = [pathlib.Path(uri.removeprefix("file://")) for uri in DeltaTable(str(lake / "attempts")).file_uris()]
    if copies == 0:
        run(files, f"the {len(files)} committed files of {lake}", runs, windowed=True)
        return
    if len(files) != 1:
        sys.exit(f"{lake}: expected one compacted attempt file, found {len(files)}")
    with tempfile.TemporaryDirectory() as folder:
        links = []
        for copy in range(copies):
            link = pathlib.Path(folder) / f"copy-{copy:04}.parquet"
            link.symlink_to(files[0])
            links.append(link)
        run(links, f"{copies} links to {files[0]}", runs)


def run(files, what, runs, windowed=False):
    """Times QUERIES (and WINDOWED) over `files` (hot: one warm-up, then
    `runs` runs)."""
    paths = [str(f) for f in files]
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    db.execute(f"CREATE VIEW attempts AS SELECT * FROM read_parquet({paths!r})")
    (attempts,) = db.execute("SELECT count(*) FROM attempts").fetchone()
    print(f"{attempts:,} attempts in {what}", file=sys.stderr)
    queries = list(QUERIES)
    if windowed:
        (end,) = db.execute(
            "SELECT strftime(date_trunc('day', max(request_start)) + INTERVAL 1 DAY, '%Y-%m-%d %H:%M:%S')"
            " FROM attempts").fetchone()
        print(f"windows end at {end} UTC", file=sys.stderr)
        bounds = {
            f"window_{days}d": f"request_start >= TIMESTAMPTZ '{end}+00' - INTERVAL {days} DAY"
                               f" AND request_start < TIMESTAMPTZ '{end}+00'"
            for days in (1, 7, 30)
        }
        queries += [(name, sql.format(**bounds)) for name, sql in WINDOWED]
    table = "| query | DuckDB median ms | runs ms |\n|---|---:|---|\n"
    for name, sql in queries:
        timings = []
        for attempt in range(runs + 1):
            started = time.perf_counter()
            db.sql(sql).to_arrow_table()
            if attempt:
                timings.append((time.perf_counter() - started) * 1000)
        median = statistics.median(timings)
        print(json.dumps({"name": name, "attempts": attempts, "median_ms": median, "runs_ms": timings}))
        table += f"| {name} | {median:,.0f} | {', '.join(f'{t:.0f}' for t in timings)} |\n"
    print(table, end="")


if __name__ == "__main__":
    main()
