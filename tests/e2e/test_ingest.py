"""Exactly-once Kafka → lake ingest against a real tansu broker, with a
client we did not write producing and DuckDB reading the lake."""

import json
import os
import random
import signal
import subprocess
import time

import pytest

import support
from support import gatemeter

TOTAL_MESSAGES = 100_000
BAD_SHARE = 0.01
PARTITIONS = 4


@pytest.fixture(scope="module")
def loaded_topic(broker, tmp_path_factory):
    """100,000 messages (1% bad, across every class) on a 4-partition topic,
    produced by confluent-kafka, keyed by request_id."""
    work = tmp_path_factory.mktemp("loaded")
    # Starting just before midnight, the traffic spans two days and two hours.
    lines = support.generate_events(work / "events.jsonl", requests=90_000, seed=11, start="2026-11-01T23:59:30Z")
    assert len(lines) >= TOTAL_MESSAGES, len(lines)
    lines = lines[:TOTAL_MESSAGES]
    messages = support.mix_bad_events(lines, BAD_SHARE, seed=5)
    assert len(messages) == TOTAL_MESSAGES
    # The same messages as a JSONL file, for the import comparison.
    with open(work / "messages.jsonl", "wb") as f:
        for _key, payload, _cls in messages:
            f.write(payload + b"\n")
    topic = f"loaded-{os.getpid()}-{random.randrange(1 << 30)}"
    delivered = support.produce(broker, topic, messages, partitions=PARTITIONS)
    classes = {cls for _p, _o, cls in delivered if cls}
    assert classes == set(support.BAD_CLASSES), classes
    assert len({p for p, _o, _c in delivered}) == PARTITIONS
    return {"topic": topic, "delivered": delivered, "jsonl": work / "messages.jsonl"}


def ingest_args(broker, topic, data_dir, group, *extra):
    return ["--brokers", broker, "--topic", topic, "--group", group, "--data-dir", data_dir, "ingest", *extra]


def test_every_good_event_exactly_once_and_every_bad_one_a_dead_letter(broker, loaded_topic, tmp_path):
    data_dir = tmp_path / "lake"
    result = gatemeter(*ingest_args(broker, loaded_topic["topic"], data_dir, "g-once", "--until-caught-up"))
    n_bad = sum(1 for _p, _o, cls in loaded_topic["delivered"] if cls)
    assert f"stored {TOTAL_MESSAGES - n_bad} events, {n_bad} dead letters" in result.stdout
    support.assert_exactly_once(data_dir, loaded_topic["delivered"])
    # Dead letters name the field and keep no payload, only its hash and size.
    letters = support.dead_letters(data_dir)
    for _p, _o, cls, field, size in letters:
        if cls in ("missing_field", "wrong_type", "invalid_enum", "bad_timestamp", "out_of_range"):
            assert field, f"{cls} without a field"
        if cls == "oversize":
            assert size > 1 << 20
    columns = {row[0] for row in support.query(f"DESCRIBE SELECT * FROM {support.parquet_source(data_dir, 'dead_letters')}")}
    assert "payload" not in columns and "payload_sha256" in columns
    # A second run finds nothing new: the lake's own offsets are the truth.
    again = gatemeter(*ingest_args(broker, loaded_topic["topic"], data_dir, "g-once-2", "--until-caught-up"))
    assert "stored 0 events, 0 dead letters" in again.stdout
    support.assert_exactly_once(data_dir, loaded_topic["delivered"])


def test_duckdb_reads_the_lake_as_it_is(broker, loaded_topic, tmp_path):
    data_dir = tmp_path / "lake"
    gatemeter(*ingest_args(broker, loaded_topic["topic"], data_dir, "g-duck", "--until-caught-up"))
    n_good = sum(1 for _p, _o, cls in loaded_topic["delivered"] if cls is None)
    source = support.parquet_source(data_dir)
    files = sorted(str(data_dir / path) for path in support.live_files(data_dir))
    [(count, hours, min_date)] = support.query(
        f"SELECT count(*), count(DISTINCT (date, hour)), min(date) FROM {source}"
    )
    assert count == n_good
    assert hours == 2 and str(min_date) == "2026-11-01"
    # Types an outside reader relies on: exact decimal money, UTC timestamps.
    types = dict(support.query(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet({files!r}))"))
    assert types["cost_usd"] == "DECIMAL(20,9)"
    assert types["request_start"] == "TIMESTAMP WITH TIME ZONE"
    # Files are zstd-compressed, with statistics, sorted by request_start.
    [(codecs, with_stats)] = support.query(
        f"SELECT list_distinct(list(compression)), bool_and(stats_min IS NOT NULL) "
        f"FROM parquet_metadata({files!r}) WHERE path_in_schema = 'request_start'"
    )
    assert codecs == ["ZSTD"] and with_stats
    unsorted = support.query(
        f"SELECT count(*) FROM (SELECT request_start < lag(request_start) OVER (PARTITION BY filename ORDER BY file_row_number) AS back "
        f"FROM read_parquet({files!r}, filename = true, file_row_number = true)) WHERE back"
    )
    assert unsorted == [(0,)]


def test_sigkill_at_random_points_keeps_exactly_once(broker, loaded_topic, tmp_path):
    data_dir = tmp_path / "lake"
    rng = random.Random(20261122)
    # Each run joins a new consumer group: Kafka's group offsets are not the
    # source of truth, the lake's Delta log is.
    # Fail points abort between a flush's data files and its Delta commit;
    # the other runs are killed with SIGKILL at a random moment.
    plan = [
        {"GATEMETER_FAIL_POINT": "after_data_files@2"},
        None,
        {"GATEMETER_FAIL_POINT": "mid_data_files@1"},
        None,
        None,
        {"GATEMETER_FAIL_POINT": "after_data_files@1"},
        None,
        None,
    ]
    crashes = 0
    sigkills = 0
    for run, fail_env in enumerate(plan):
        args = ingest_args(broker, loaded_topic["topic"], data_dir, f"g-crash-{run}", "--until-caught-up", "--flush-rows", 4000)
        env = dict(os.environ, GATEMETER_LOG="warn", **(fail_env or {}))
        proc = subprocess.Popen([support.gatemeter_bin(), *map(str, args)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if fail_env:
            proc.wait(timeout=300)
            assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr.read()[-2000:])
            crashes += 1
        else:
            try:
                proc.wait(timeout=rng.uniform(0.5, 2.5))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                crashes += 1
                sigkills += 1
        proc.stdout.close()
        proc.stderr.close()
    assert sigkills >= 5 and crashes >= 8, f"only {sigkills} SIGKILLs and {crashes} crashes happened"
    final = gatemeter(*ingest_args(broker, loaded_topic["topic"], data_dir, "g-crash-final", "--until-caught-up"))
    assert "stored" in final.stdout
    support.assert_exactly_once(data_dir, loaded_topic["delivered"])
    # Crashed flushes left files no commit names: invisible to every Delta
    # reader, and removed by vacuum once past its retention.
    on_disk = support.files_on_disk(data_dir)
    committed = support.committed_files(data_dir)
    assert committed <= on_disk
    assert on_disk - committed, "the fail points left uncommitted files"
    gatemeter("--data-dir", data_dir, "compact", "--retention", "0m")
    assert support.files_on_disk(data_dir) == support.committed_files(data_dir)
    support.assert_exactly_once(data_dir, loaded_topic["delivered"])


def test_import_stores_the_same_lake_as_kafka(broker, loaded_topic, tmp_path):
    kafka_lake = tmp_path / "kafka"
    import_lake = tmp_path / "import"
    # Two lakes hash user ids alike only under one privacy key.
    key = {"GATEMETER_PRIVACY_KEY": "one key for both lakes of this test"}
    gatemeter(*ingest_args(broker, loaded_topic["topic"], kafka_lake, "g-import", "--until-caught-up"),
              env=key)
    result = gatemeter("--data-dir", import_lake, "import", loaded_topic["jsonl"], env=key)
    n_bad = sum(1 for _p, _o, cls in loaded_topic["delivered"] if cls)
    assert f"stored {TOTAL_MESSAGES - n_bad} events, {n_bad} dead letters" in result.stdout
    meta = "_topic, _partition, _offset, _ingested_at"
    a = support.parquet_source(kafka_lake)
    b = support.parquet_source(import_lake)
    for left, right in ((a, b), (b, a)):
        [(diff,)] = support.query(
            f"SELECT count(*) FROM (SELECT * EXCLUDE ({meta}) FROM {left} EXCEPT ALL SELECT * EXCLUDE ({meta}) FROM {right})"
        )
        assert diff == 0
    letters = "SELECT error_class, payload_sha256 FROM {} ORDER BY ALL"
    assert support.query(letters.format(support.parquet_source(kafka_lake, "dead_letters"))) == \
        support.query(letters.format(support.parquet_source(import_lake, "dead_letters")))
    # Importing the same file again stores nothing twice.
    again = gatemeter("--data-dir", import_lake, "import", loaded_topic["jsonl"], env=key)
    assert "stored 0 events, 0 dead letters" in again.stdout


def test_duplicates_and_corrections_are_kept_for_query_time_dedup(broker, topic, tmp_path):
    data_dir = tmp_path / "lake"
    gatemeter("--brokers", broker, "--topic", topic, "produce", "--count", 3000, "--rate", 0,
              "--seed", 3, "--duplicates", 0.05, "--corrections", 0.05, "--partitions", 2)
    gatemeter(*ingest_args(broker, topic, data_dir, "g-dups", "--until-caught-up"))
    source = support.parquet_source(data_dir)
    [(rows, attempts, twice, corrected)] = support.query(
        f"SELECT count(*), count(DISTINCT attempt_id), "
        f"(SELECT count(*) FROM (SELECT attempt_id FROM {source} WHERE event_version = 0 GROUP BY attempt_id HAVING count(*) > 1)), "
        f"count(*) FILTER (WHERE event_version = 1) FROM {source}"
    )
    assert twice > 0 and corrected > 0 and rows > attempts
    # The winner per attempt_id: highest event_version, then the latest position.
    winners = support.query(
        f"SELECT attempt_id, event_version, cost_usd FROM (SELECT *, row_number() OVER "
        f"(PARTITION BY attempt_id ORDER BY event_version DESC, _ingested_at DESC, _offset DESC) AS rank FROM {source}) "
        f"WHERE rank = 1"
    )
    assert len(winners) == attempts
    originals = dict(support.query(
        f"SELECT attempt_id, any_value(cost_usd) FROM {source} WHERE event_version = 0 GROUP BY attempt_id"
    ))
    corrected_winners = [(a, cost) for a, version, cost in winners if version == 1]
    assert len(corrected_winners) == corrected
    for attempt_id, cost in corrected_winners:
        # The generator's correction is the reported cost × 1.1.
        assert abs(float(cost) - float(originals[attempt_id]) * 1.1) < 1e-8


def test_cli_errors_are_one_clear_line(tmp_path):
    no_broker = gatemeter("--data-dir", tmp_path, "ingest", check=False, env={"GATEMETER_KAFKA_BROKERS": ""})
    assert no_broker.returncode != 0
    assert "--brokers" in no_broker.stderr and len(no_broker.stderr.strip().splitlines()) == 1
    missing = gatemeter("--data-dir", tmp_path, "import", tmp_path / "nope.jsonl", check=False)
    assert missing.returncode != 0 and "nope.jsonl" in missing.stderr
    bad_rate = gatemeter("produce", "--output", "-", "--count", "1", "--malformed", "3", check=False)
    assert bad_rate.returncode != 0 and "--malformed" in bad_rate.stderr
    bad_fail_point = gatemeter("--data-dir", tmp_path, "import", tmp_path / "x", check=False,
                               env={"GATEMETER_FAIL_POINT": "sometimes"})
    assert bad_fail_point.returncode != 0


def test_demo_shows_events_landing_and_live_kpis(tmp_path):
    result = gatemeter("demo", "--duration", 14, "--rate", 300, cwd=tmp_path, timeout=120)
    assert "ingest" in result.stdout
    kpi_lines = [line for line in result.stdout.splitlines() if line.startswith("kpis ")]
    assert kpi_lines, result.stdout
    requests = int(kpi_lines[-1].split("requests ")[1].split()[0])
    assert requests > 0, kpi_lines[-1]
    last = [line for line in result.stdout.splitlines() if line.startswith("stopped:")]
    assert last, result.stdout
    stored = int(last[0].split()[1])
    assert stored > 500
    rows = support.lake_positions(tmp_path / "gatemeter-data")
    assert len(rows) == stored
