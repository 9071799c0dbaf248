#!/usr/bin/env python3
"""Query benchmark (not a test): the SRE dashboard query set on a lake of
about 10 million attempts, in gatemeter (DataFusion) and in DuckDB on the
same Parquet files, hot, in the same run, with each engine's peak RSS.

1. Builds the lake once (kept for later runs): `gatemeter produce` writes a
   month of synthetic traffic (2026-10-23 .. 2026-11-22) to JSONL, then
   `gatemeter import` commits it. `gatemeter compact` then gives every hour
   one deduplicated file, as a deployment running it hourly would have
   (timed, with its peak RSS; a no-op on later runs).
2. gatemeter: `query_bench` (crates/gatemeter/examples) opens the
   engine once and runs each query (session per run, as the API does),
   keeping decoded columns as `gatemeter serve` does (256 MiB;
   QUERY_BENCH_COLUMN_CACHE_MB=0 in the environment for none). Each
   query's first (untimed, cold) run is reported beside the timed ones.
3. DuckDB: a separate process defines the same views, translated from
   queries/attempts.sql and queries/requests.sql (only epoch arithmetic and
   struct syntax differ), over read_parquet with Hive partitions of the
   same committed files (compacted and fresh, from the Delta log), and runs
   the same queries (quantile_cont for percentile_cont). It does so twice:
   with the views' arg_max_null / arg_min_null, and with its ordered
   last / first instead; each query is compared with the faster.
Both engines' answers are compared (row counts; spend to the nano-dollar).
Writes bench/results/query.json (gatemeter's planning time per query too)
and prints a Markdown table.

usage: bench/query_bench.py [--attempts N] [--runs N] [--lake DIR] [--no-compact]
       (release build: cargo build --release -p gatemeter --bin gatemeter
        && cargo build --release -p gatemeter --example query_bench)
"""

import argparse
import csv
import decimal
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
PRICES = ROOT / "config" / "prices.csv"
START = "2026-10-23T00:00:00Z"
DAYS = 30
ATTEMPTS_PER_REQUEST = 1.12  # measured on the default scenario

DAY = ("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z")
WEEK = ("2026-11-15T00:00:00Z", "2026-11-22T00:00:00Z")
MONTH_TO_DATE = ("2026-11-01T00:00:00Z", "2026-11-22T00:00:00Z")

# The SRE dashboard set. `quantile_cont` is DuckDB's name for DataFusion's
# `percentile_cont` (both: linear interpolation between closest ranks).
SUITE = [
    ("latency_by_model_hour_24h", DAY, """
        SELECT requested_model, date_trunc('hour', request_start) AS hour,
               quantile_cont(e2e_latency_ms, 0.5) AS p50,
               quantile_cont(e2e_latency_ms, 0.95) AS p95,
               quantile_cont(e2e_latency_ms, 0.99) AS p99
        FROM requests WHERE successful GROUP BY 1, 2 ORDER BY 1, 2"""),
    ("error_budget_burn_by_team_hour_24h", DAY, """
        SELECT team, date_trunc('hour', request_start) AS hour,
               (1.0 - CAST(count(*) FILTER (WHERE good) AS DOUBLE)
                      / CAST(NULLIF(count(*) FILTER (WHERE valid), 0) AS DOUBLE)) / 0.001 AS burn
        FROM requests GROUP BY 1, 2 ORDER BY 1, 2"""),
    ("retry_amplification_by_provider_day_7d", WEEK, """
        SELECT provider, date_trunc('day', request_start) AS day,
               CAST(sum(attempts) AS DOUBLE) / CAST(count(*) AS DOUBLE) AS retry_amplification
        FROM requests GROUP BY 1, 2 ORDER BY 1, 2"""),
    ("cost_per_success_by_key_day_7d", WEEK, """
        SELECT api_key_id, date_trunc('day', request_start) AS day,
               CAST(sum(cost_usd) AS DECIMAL(38, 9)) / NULLIF(count(*) FILTER (WHERE successful), 0) AS cost_per_success
        FROM requests GROUP BY 1, 2 ORDER BY 1, 2"""),
    ("spend_by_team_mtd", MONTH_TO_DATE, """
        SELECT team, CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS spend_usd
        FROM attempts GROUP BY team ORDER BY team"""),
    ("drilldown_one_team_one_day", DAY, """
        SELECT requested_model, provider, count(*) AS attempts, CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS spend_usd,
               quantile_cont(duration_ms, 0.95) AS p95_ms
        FROM attempts WHERE team = 'search' GROUP BY 1, 2 ORDER BY 1, 2"""),
]


def run_measured(cmd, env=None):
    """Runs cmd under GNU time: (stdout, wall s, peak RSS MiB)."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    line = [l for l in result.stderr.splitlines() if l.startswith("TIME ")][-1]
    return result.stdout, wall, int(line.split()[2]) / 1024


def build_lake(lake, attempts):
    gatemeter = str(TARGET / "gatemeter")
    requests = int(attempts / ATTEMPTS_PER_REQUEST)
    rate = requests / (DAYS * 86400)
    with tempfile.TemporaryDirectory(prefix="gatemeter-qbench-", dir=lake.parent) as tmp:
        events = pathlib.Path(tmp) / "events.jsonl"
        started = time.perf_counter()
        subprocess.run([gatemeter, "produce", "--rate", "0", "--simulated-rate", f"{rate:.6f}", "--count", str(requests),
                        "--start", START, "--seed", "11", "--output", str(events)], check=True)
        produced = time.perf_counter()
        subprocess.run([gatemeter, "--data-dir", str(lake), "import", str(events)], check=True)
        print(f"lake: produce {produced - started:.0f} s, import {time.perf_counter() - produced:.0f} s", file=sys.stderr)


def compact(lake):
    """Runs `gatemeter compact` on the lake: (seconds, peak RSS MiB, its report)."""
    out, wall, rss = run_measured([str(TARGET / "gatemeter"), "--data-dir", str(lake), "compact"])
    print(f"compaction: {wall:.1f} s, peak RSS {rss:.0f} MiB: {out.strip()}", file=sys.stderr)
    return {"seconds": wall, "peak_rss_mib": rss, "report": out.strip()}


def live_files(lake):
    """The attempts files the Delta log's current version names: (compacted, fresh) paths."""
    import pyarrow
    from deltalake import DeltaTable
    actions = pyarrow.table(DeltaTable(str(pathlib.Path(lake) / "attempts")).get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    compacted = [f"{lake}/attempts/{p}" for p in paths if p.rsplit("/", 1)[-1].startswith("compacted-")]
    fresh = [f"{lake}/attempts/{p}" for p in paths if not p.rsplit("/", 1)[-1].startswith("compacted-")]
    return compacted, fresh


# ---- DuckDB side -----------------------------------------------------------

def view_body(name, variant="arg"):
    """A view of queries/ without its header, with epoch arithmetic and
    unnamed structs in DuckDB's words. `arg` keeps arg_max_null /
    arg_min_null (DuckDB's own); `ordered` writes them as DuckDB's ordered
    last / first over the struct key's fields, the same values."""
    text = (ROOT / "queries" / f"{name}.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    if variant == "ordered":
        keys = dict((key, cols) for cols, key in re.findall(r"struct\(([\w, ]+)\) AS (\w+)", body))
        for key, cols in keys.items():
            body = re.sub(rf"arg_max_null\((\w+), {key}\)", rf"last(\1 ORDER BY {cols})", body)
            body = re.sub(rf"arg_min_null\((\w+), {key}\)", rf"first(\1 ORDER BY {cols})", body)
    if name == "attempts":
        body = body[:body.index("SELECT d.* EXCLUDE (cost_usd)")] + DUCKDB_PRICED_SELECT
    body = re.sub(r"\bstruct\(", "row(", body)
    return re.sub(r"CAST\(([\w.]+) AS BIGINT\)", r"epoch_us(\1)", body)


# gatemeter prices attempts with its function attempt_cost (the price book's
# own formula, row by row); DuckDB gets the same prices as a range join on
# the book with per-token prices of 15 decimals, exact before the one
# rounding to 9.
DUCKDB_PRICED_SELECT = """
SELECT d.* EXCLUDE (cost_usd),
       CAST(epoch_us(d.attempt_end) - epoch_us(d.attempt_start) AS DOUBLE) / 1000.0 AS duration_ms,
       CAST(CASE
           WHEN NOT d.billed THEN CAST(0 AS DECIMAL(20, 9))
           WHEN d.cost_usd IS NOT NULL THEN d.cost_usd
           WHEN p.provider IS NOT NULL THEN CAST(
                 CAST(COALESCE(d.input_tokens, 0) - COALESCE(d.cache_read_tokens, 0) - COALESCE(d.cache_write_tokens, 0) AS DECIMAL(20, 0)) * p.input_per_token
               + CAST(COALESCE(d.cache_read_tokens, 0) AS DECIMAL(20, 0)) * p.cache_read_per_token
               + CAST(COALESCE(d.cache_write_tokens, 0) AS DECIMAL(20, 0)) * p.cache_write_per_token
               + CAST(COALESCE(d.output_tokens, 0) AS DECIMAL(20, 0)) * p.output_per_token
               + CAST(COALESCE(d.web_search_requests, 0) AS DECIMAL(20, 0)) * p.web_search_per_request
               AS DECIMAL(20, 9)) + p.request_fee
       END AS DECIMAL(20, 9)) AS cost_usd,
       CASE
           WHEN NOT d.billed THEN 'unbilled'
           WHEN d.cost_usd IS NOT NULL THEN 'reported'
           WHEN p.provider IS NOT NULL THEN 'price_book'
           ELSE 'unpriced'
       END AS cost_source
FROM final_marked d
LEFT JOIN price_book p
       ON p.provider = d.provider
      AND p.model = COALESCE(d.served_model, d.requested_model)
      AND d.attempt_start >= p.effective_from
      AND (p.effective_to IS NULL OR d.attempt_start < p.effective_to)
"""


def price_book_sql():
    """The price book with exact per-token columns for DUCKDB_PRICED_SELECT."""
    rows = list(csv.DictReader(PRICES.open()))
    values = []
    d = decimal.Decimal
    for r in rows:
        money = lambda k: f"CAST('{d(r[k])}' AS DECIMAL(20, 9))"
        unit = lambda v: f"CAST('{v}' AS DECIMAL(38, 15))"
        values.append(
            f"('{r['provider']}', '{r['model']}', TIMESTAMPTZ '{r['effective_from']}', "
            f"{money('request_fee')}, "
            f"{unit(d(r['input_per_1m']) / 1000000)}, {unit(d(r['output_per_1m']) / 1000000)}, "
            f"{unit(d(r['cache_read_per_1m']) / 1000000)}, {unit(d(r['cache_write_per_1m']) / 1000000)}, "
            f"{unit(d(r['web_search_per_1k']) / 1000)})")
    return (
        "CREATE TABLE price_book_rows AS SELECT * FROM (VALUES " + ", ".join(values) + ") AS t(provider, model, "
        "effective_from, request_fee, input_per_token, output_per_token, cache_read_per_token, "
        "cache_write_per_token, web_search_per_request);\n"
        "CREATE TABLE price_book AS SELECT *, lead(effective_from) OVER (PARTITION BY provider, model "
        "ORDER BY effective_from) AS effective_to FROM price_book_rows;")


def duckdb_worker(suite_file, lake, runs, variant):
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {os.cpu_count() or 2}")
    con.execute(price_book_sql())
    attempts_body, requests_body = view_body("attempts", variant), view_body("requests", variant)
    tables = dict(zip(("compacted", "fresh"), live_files(lake)))
    for query in json.loads(pathlib.Path(suite_file).read_text()):
        sql = query["sql"]
        times, table = [], None
        for run in range(runs + 1):
            started = time.perf_counter()
            for kind, files in tables.items():
                # An empty list is an empty table of the same columns.
                source = (f"read_parquet({files!r}, hive_partitioning = true)" if files else
                          f"(SELECT * FROM read_parquet({sum(tables.values(), [])[:1]!r}, hive_partitioning = true) LIMIT 0)")
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW attempts_{kind}_raw AS SELECT * EXCLUDE (date, hour) FROM {source} "
                    f"WHERE date >= DATE '{query['from'][:10]}' AND date <= DATE '{query['to'][:10]}' "
                    f"AND request_start >= TIMESTAMPTZ '{query['from']}' AND request_start < TIMESTAMPTZ '{query['to']}'")
            con.execute(f"CREATE OR REPLACE TEMP VIEW attempts AS {attempts_body}")
            con.execute(f"CREATE OR REPLACE TEMP VIEW requests AS {requests_body}")
            # Arrow, as gatemeter's engine returns it (and no pytz needed).
            table = con.sql(sql).to_arrow_table()
            if run > 0:
                times.append((time.perf_counter() - started) * 1000)
        answer = None
        if query["name"] == "spend_by_team_mtd":
            answer = [[str(v) for v in row.values()] for row in table.to_pylist()]
        print(json.dumps({"name": query["name"], "rows": table.num_rows, "ms": times, "answer": answer}), flush=True)


# ---- the run -----------------------------------------------------------------

def median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lake", type=pathlib.Path,
                        default=pathlib.Path.home() / ".cache" / "gatemeter-bench" / "lake-10m")
    parser.add_argument("--no-compact", action="store_true", help="time the lake as imported (duplicates in place)")
    parser.add_argument("--duckdb-worker", nargs=4, metavar=("SUITE", "LAKE", "RUNS", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.duckdb_worker:
        suite_file, lake, runs, variant = args.duckdb_worker
        duckdb_worker(suite_file, lake, int(runs), variant)
        return

    bench = TARGET / "examples" / "query_bench"
    for binary in (TARGET / "gatemeter", bench):
        assert binary.exists(), f"{binary} missing: see the usage in this file's docstring"
    if not (args.lake / "attempts" / "_delta_log").exists():
        args.lake.parent.mkdir(parents=True, exist_ok=True)
        build_lake(args.lake, args.attempts)
    # A no-op ("compacted 0 partitions") once the lake was compacted.
    compaction = None if args.no_compact else compact(args.lake)

    suite = [{"name": n, "from": w[0], "to": w[1], "sql": " ".join(sql.split())} for n, w, sql in SUITE]
    with tempfile.TemporaryDirectory() as tmp:
        duck_suite = pathlib.Path(tmp) / "duckdb.json"
        duck_suite.write_text(json.dumps(suite))
        df_suite = pathlib.Path(tmp) / "datafusion.json"
        df_suite.write_text(json.dumps([dict(q, sql=q["sql"].replace("quantile_cont(", "percentile_cont(")) for q in suite]))
        df_out, _, df_rss = run_measured([str(bench), str(args.lake), str(PRICES), str(df_suite), str(args.runs)])
        # DuckDB runs the views both ways; each query is compared with the
        # faster of the two, and DuckDB's peak RSS is the smaller.
        duck = {variant: run_measured([sys.executable, __file__, "--duckdb-worker", str(duck_suite),
                                       str(args.lake), str(args.runs), variant])
                for variant in ("arg", "ordered")}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "query_raw.jsonl").write_text(df_out + "".join(
        "".join(json.dumps(dict(json.loads(line), duckdb_views=variant)) + "\n" for line in text.splitlines())
        for variant, (text, _, _) in duck.items()))
    ours = {r["name"]: r for r in map(json.loads, df_out.splitlines())}
    by_variant = {variant: {r["name"]: r for r in map(json.loads, text.splitlines())} for variant, (text, _, _) in duck.items()}
    theirs = {name: min((runs[name] for runs in by_variant.values()), key=lambda r: median(r["ms"]))
              for name in ours}
    duck_rss = min(rss for _, _, rss in duck.values())

    import duckdb
    attempts = duckdb.sql(f"SELECT count(*) FROM read_parquet({sum(live_files(args.lake), [])!r})").fetchall()[0][0]
    spend = subprocess.run(
        [str(TARGET / "gatemeter"), "--data-dir", str(args.lake), "--prices", str(PRICES), "query", "--format", "json",
         f"SELECT team, CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS spend_usd FROM attempts "
         f"WHERE request_start >= arrow_cast('{MONTH_TO_DATE[0]}', 'Timestamp(µs, \"UTC\")') "
         f"AND request_start < arrow_cast('{MONTH_TO_DATE[1]}', 'Timestamp(µs, \"UTC\")') GROUP BY team ORDER BY team"],
        capture_output=True, text=True, check=True).stdout
    ours_spend = [[r["team"], r["spend_usd"]] for r in json.loads(spend)]
    agree = ours_spend == theirs["spend_by_team_mtd"]["answer"]

    results = {"attempts": attempts, "runs": args.runs, "gatemeter_peak_rss_mib": df_rss, "duckdb_peak_rss_mib": duck_rss,
               "duckdb_peak_rss_mib_by_views": {v: rss for v, (_, _, rss) in duck.items()},
               "spend_by_team_mtd_agrees": agree, "compaction": compaction,
               "gatemeter_column_cache_mib": next(iter(ours.values())).get("column_cache_mb"), "queries": []}
    ratios = []
    print("| query | rows | gatemeter ms (median) | of which planning | gatemeter first run ms | DuckDB ms (median) | ratio |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for q in suite:
        a, b = ours[q["name"]], theirs[q["name"]]
        if a["rows"] != b["rows"]:
            raise SystemExit(f"{q['name']}: gatemeter {a['rows']} rows, DuckDB {b['rows']}")
        ratio = median(a["ms"]) / median(b["ms"])
        ratios.append(ratio)
        results["queries"].append({"name": q["name"], "rows": a["rows"], "gatemeter_ms": a["ms"], "duckdb_ms": b["ms"],
                                   "duckdb_median_ms_by_views": {v: median(r[q["name"]]["ms"]) for v, r in by_variant.items()},
                                   "gatemeter_median_ms": median(a["ms"]), "duckdb_median_ms": median(b["ms"]),
                                   "gatemeter_plan_median_ms": median(a["plan_ms"]),
                                   "gatemeter_first_run_ms": a.get("first_ms"),
                                   "ratio": ratio})
        print(f"| {q['name']} | {a['rows']} | {median(a['ms']):.1f} | {median(a['plan_ms']):.1f} | {a.get('first_ms', 0):.1f} "
              f"| {median(b['ms']):.1f} | {ratio:.2f} |")
    results["geometric_mean_ratio"] = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print(f"\nattempts {attempts:,}; geometric mean ratio {results['geometric_mean_ratio']:.2f}; "
          f"peak RSS gatemeter {df_rss:.0f} MiB, DuckDB {duck_rss:.0f} MiB; spend by team agrees: {agree}")
    (out / "query.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
