"""KPIs from `gatemeter kpis` checked against DuckDB computing the same
definitions independently over the raw JSONL (dedup, price book, request
roll-up), plus `gatemeter query` in every output format."""

import json
from decimal import Decimal

import pytest

import support
from support import ROOT, gatemeter

PRICES = ROOT / "config" / "prices.csv"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    work = tmp_path_factory.mktemp("kpis")
    events = work / "events.jsonl"
    support.generate_events(events, requests=4000, seed=21, start="2026-11-01T10:00:00Z",
                            extra=("--duplicates", 0.02, "--corrections", 0.02))
    data_dir = work / "lake"
    gatemeter("--data-dir", data_dir, "import", events)
    return {"events": events, "data_dir": data_dir}


def duckdb_oracle(events=None, arrow=None):
    """Spend, requests and attempts per team by docs/kpis.md, in DuckDB SQL, over
    the raw JSONL `events` or over `arrow`, a table with the lake's columns."""
    raw = "SELECT * FROM lake" if arrow is not None else f"""
            SELECT * FROM read_json('{events}', format = 'newline_delimited',
                                    columns = {{
                attempt_id: 'VARCHAR', event_version: 'BIGINT', request_id: 'VARCHAR', attempt_index: 'INT',
                is_final: 'BOOLEAN', attempt_start: 'TIMESTAMPTZ', provider: 'VARCHAR', requested_model: 'VARCHAR',
                served_model: 'VARCHAR', team: 'VARCHAR', billed: 'BOOLEAN', outcome: 'VARCHAR',
                input_tokens: 'BIGINT', output_tokens: 'BIGINT', cache_read_tokens: 'BIGINT',
                cache_write_tokens: 'BIGINT', web_search_requests: 'BIGINT', cost_usd: 'DECIMAL(20,9)'}})"""
    return support.query(f"""
        WITH raw AS ({raw}),
        dedup AS (
            SELECT * FROM raw QUALIFY row_number() OVER (PARTITION BY attempt_id ORDER BY coalesce(event_version, 0) DESC) = 1
        ),
        book AS (SELECT * FROM read_csv('{PRICES}', types = {{'effective_from': 'TIMESTAMPTZ'}})),
        priced AS (
            SELECT d.*, CASE
                WHEN NOT coalesce(d.billed, d.outcome <> 'rejected') THEN 0::DECIMAL(38,9)
                WHEN d.cost_usd IS NOT NULL THEN d.cost_usd::DECIMAL(38,9)
                WHEN b.provider IS NOT NULL THEN round((
                    (coalesce(input_tokens, 0) - coalesce(cache_read_tokens, 0) - coalesce(cache_write_tokens, 0)) * b.input_per_1m::DECIMAL(38,9)
                    + coalesce(cache_read_tokens, 0) * b.cache_read_per_1m::DECIMAL(38,9)
                    + coalesce(cache_write_tokens, 0) * b.cache_write_per_1m::DECIMAL(38,9)
                    + coalesce(output_tokens, 0) * b.output_per_1m::DECIMAL(38,9)) / 1000000
                    + b.request_fee::DECIMAL(38,9) + coalesce(web_search_requests, 0) * b.web_search_per_1k::DECIMAL(38,9) / 1000, 9)::DECIMAL(38,9)
                END AS cost
            FROM dedup d LEFT JOIN book b
              ON b.provider = d.provider AND b.model = coalesce(d.served_model, d.requested_model)
             AND d.attempt_start >= b.effective_from
        ),
        requests AS (
            SELECT request_id, arg_min(coalesce(team, 'unassigned'), attempt_index) AS team, count(*) AS attempts
            FROM priced GROUP BY request_id
        )
        SELECT r.team, count(DISTINCT r.request_id), sum(r.attempts),
               (SELECT coalesce(sum(p.cost), 0)::DECIMAL(38,9) FROM priced p WHERE coalesce(p.team, 'unassigned') = r.team)
        FROM requests r GROUP BY r.team ORDER BY r.team
    """, tables={"lake": arrow} if arrow is not None else None)


def test_kpis_by_team_match_an_independent_duckdb_computation(lake):
    result = gatemeter("--data-dir", lake["data_dir"], "--prices", PRICES, "kpis", "--group-by", "team", "--format", "json")
    rows = json.loads(result.stdout)
    ours = [(r["team"], r["requests"], r["attempts"], Decimal(r["spend_usd"])) for r in rows]
    oracle = [(team, n, attempts, Decimal(spend)) for team, n, attempts, spend in duckdb_oracle(lake["events"])]
    assert ours == oracle
    # Every KPI of docs/kpis.md is present under its exact name.
    for name in ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms", "retry_amplification",
                 "retry_rate", "respent_token_share", "fallback_rate", "fallback_success_rate", "error_rate",
                 "availability", "spend_usd", "cost_per_1m_tokens_usd", "cost_per_successful_outcome_usd",
                 "token_efficiency", "model_drift_rate", "stream_interruption_rate", "error_budget_burn_rate",
                 "error_budget_remaining", "effective_throughput_pct", "cost_variance_pct", "compliance_score"]:
        assert name in rows[0], name


def test_percentiles_are_within_one_percent_of_quantile_cont(lake):
    rows = json.loads(gatemeter("--data-dir", lake["data_dir"], "--prices", PRICES, "kpis",
                                "--group-by", "provider", "--format", "json").stdout)
    ours = {r["provider"]: (r["latency_p50_ms"], r["latency_p95_ms"], r["latency_p99_ms"]) for r in rows}
    source = support.parquet_source(lake["data_dir"])
    exact = support.query(f"""
        WITH a AS (SELECT * FROM {source}
                   QUALIFY row_number() OVER (PARTITION BY attempt_id ORDER BY event_version DESC, _offset DESC) = 1),
        f AS (SELECT request_id, arg_max(provider, (is_final::INT, attempt_index)) AS provider,
                     arg_max(outcome, (is_final::INT, attempt_index)) AS outcome,
                     (epoch_ms(max(attempt_end)) - epoch_ms(min(request_start)))::DOUBLE AS e2e
              FROM a GROUP BY request_id)
        SELECT provider, quantile_cont(e2e, 0.5), quantile_cont(e2e, 0.95), quantile_cont(e2e, 0.99)
        FROM f WHERE outcome = 'success' GROUP BY provider
    """)
    assert len(exact) == len(ours)
    for provider, *values in exact:
        for got, want in zip(ours[provider], values):
            assert abs(got - want) <= 0.01 * abs(want), (provider, got, want)


def test_query_formats_and_read_only(lake, tmp_path):
    sql = "SELECT team, count(*) AS attempts FROM attempts GROUP BY team ORDER BY team"
    as_json = json.loads(gatemeter("--data-dir", lake["data_dir"], "query", sql, "--format", "json").stdout)
    as_csv = gatemeter("--data-dir", lake["data_dir"], "query", sql, "--format", "csv").stdout.splitlines()
    assert as_csv[0] == "team,attempts"
    assert [f"{r['team']},{r['attempts']}" for r in as_json] == as_csv[1:]
    out = tmp_path / "out.parquet"
    gatemeter("--data-dir", lake["data_dir"], "query", sql, "--format", "parquet", "--output", out)
    assert support.query(f"SELECT count(*) FROM read_parquet('{out}')") == [(len(as_json),)]
    for statement in ["DROP TABLE attempts", "CREATE TABLE x AS SELECT 1", "INSERT INTO attempts_raw SELECT * FROM attempts_raw",
                      "SET datafusion.execution.batch_size = 1"]:
        refused = gatemeter("--data-dir", lake["data_dir"], "query", statement, check=False)
        assert refused.returncode != 0 and refused.stderr.startswith("gatemeter: error: query:"), statement
