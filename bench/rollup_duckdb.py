#!/usr/bin/env python3
"""DuckDB over raw Parquet at 100M attempts (not a test): the other side of
the rollup benchmark (BENCHMARKS.md, "Rollups").

Takes a lake holding one compacted hour (the one `rollup_bench` reads its
stored rollups from), links its committed attempt file COPIES times into a
folder (links, not copies: the same bytes, hot in the page cache, as a
dashboard's repeated reads would find them), and times in DuckDB, hot (one
warm-up, then RUNS runs, median), queries over all of them:

- spend by team: `sum(cost_usd)` of the stored attempts, the reported cost
  only;
- latency p50/p95/p99 by model: attempt durations of successful attempts;
- retry amplification by provider: attempts per distinct request.

Each is a lower bound on what DuckDB would do for the KPI: no pricing of
unreported costs from the price book, no deduplication, no roll-up of
attempts into requests. A ratio against gatemeter's rollups measured this
way understates gatemeter's advantage.

With COPIES 0 it reads the lake's own committed attempt files instead
(a real lake such as the one bench/month_lake.sh builds), each once.

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
    ("spend by team", """
        SELECT team, sum(cost_usd) AS spend_usd FROM attempts GROUP BY team"""),
    ("latency p50/p95/p99 by model", """
        SELECT requested_model,
               quantile_cont(epoch_ms(attempt_end) - epoch_ms(attempt_start), [0.5, 0.95, 0.99]) AS ms
        FROM attempts WHERE outcome = 'success' GROUP BY requested_model"""),
    ("retry amplification by provider", """
        SELECT provider, count(*) / count(DISTINCT request_id) AS retry_amplification
        FROM attempts GROUP BY provider"""),
]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.split("usage: ")[1])
    lake, copies = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) == 4 else 3
    files = [pathlib.Path(uri.removeprefix("file://")) for uri in DeltaTable(str(lake / "attempts")).file_uris()]
    if copies == 0:
        run(files, f"the {len(files)} committed files of {lake}", runs)
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


def run(files, what, runs):
    """Times QUERIES over `files` (hot: one warm-up, then `runs` runs)."""
    paths = [str(f) for f in files]
    db = duckdb.connect()
    db.execute(f"CREATE VIEW attempts AS SELECT * FROM read_parquet({paths!r})")
    (attempts,) = db.execute("SELECT count(*) FROM attempts").fetchone()
    print(f"{attempts:,} attempts in {what}", file=sys.stderr)
    table = "| query | DuckDB median ms | runs ms |\n|---|---:|---|\n"
    for name, sql in QUERIES:
        timings = []
        for attempt in range(runs + 1):
            started = time.perf_counter()
            db.execute(sql).fetchall()
            if attempt:
                timings.append((time.perf_counter() - started) * 1000)
        median = statistics.median(timings)
        print(json.dumps({"name": name, "attempts": attempts, "median_ms": median, "runs_ms": timings}))
        table += f"| {name} | {median:,.0f} | {', '.join(f'{t:.0f}' for t in timings)} |\n"
    print(table, end="")


if __name__ == "__main__":
    main()
