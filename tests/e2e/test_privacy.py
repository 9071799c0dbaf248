"""Privacy canary: events carrying provider keys, bearer tokens, JWTs and
e-mail addresses in every string field go through the real binary (Kafka
ingest and file import), and none of the raw values can be found afterwards
in the data folder (Parquet data and footers, Delta log, dead letters), in
the logs, or in any answer of the API."""

import json

import support
from support import gatemeter, http

CANARIES = [
    "sk-or-v1-0123c4n4ryOpenRouterQzx1",
    "sk-proj-0123c4n4ryOpenAiKeyQzx2",
    "sk-ant-api03-c4n4ryAnthropicQzx3",
    "AIzaSy0000000000000000c4n4ryGoogleQzx4",
    "Bearer 0000c4n4ryBearerQzx5",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c4n4ryJwtSigQzx6",
    "person.c4n4ryQzx7@example.com",
]
# Every canary holds this word (never hex, so no keyed hash can): found
# anywhere, in any case, a value leaked.
NEEDLES = ["c4n4ry"]

STRING_FIELDS = [
    "attempt_id", "request_id", "operation", "requested_model", "served_model",
    "provider", "region", "org_id", "team", "app", "user_id", "api_key_id",
    "environment", "finish_reason",
]


def base_event(n):
    return {
        "schema_version": 1, "attempt_id": f"att-{n}", "request_id": f"req-{n}",
        "attempt_index": 0, "attempt_kind": "initial", "is_final": True,
        "request_start": "2026-11-01T10:00:00Z", "attempt_start": "2026-11-01T10:00:00.010Z",
        "attempt_end": "2026-11-01T10:00:01Z", "requested_model": "gpt-4o",
        "provider": "openai", "team": "search", "api_key_id": "key-fp-1",
        "environment": "prod", "outcome": "success", "input_tokens": 10,
        "output_tokens": 5, "cost_usd": 0.001,
    }


def canary_events():
    """One event per (field, canary), plus each canary in a tag key and value."""
    events = []
    for field in STRING_FIELDS:
        for canary in CANARIES:
            event = base_event(len(events))
            event[field] = f"{field} {canary}"
            events.append(event)
    for canary in CANARIES:
        event = base_event(len(events))
        event["tags"] = {"feature": "chat", "auth": canary, canary: "key-as-name"}
        events.append(event)
    # Invalid values: dead letters, which keep the class and field only.
    for field in ["attempt_kind", "outcome", "cost_usd", "request_start", "key_type"]:
        for canary in CANARIES:
            event = base_event(len(events))
            event[field] = canary
            events.append(event)
    return [json.dumps(e).encode() for e in events]


def leaks(data: bytes):
    lowered = data.lower()
    return [n for n in NEEDLES if n.lower().encode() in lowered]


def folder_leaks(folder):
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            hit = leaks(path.read_bytes())
            if hit:
                found[str(path)] = hit
    return found


def test_no_raw_secret_or_email_reaches_disk_logs_or_answers(tmp_path, broker, topic):
    messages = canary_events()
    # Ingest from a real broker and import the same events from a file.
    support.produce(broker, topic, [(None, m, True) for m in messages], partitions=2)
    data_dir = tmp_path / "lake"
    ingest = gatemeter("--data-dir", data_dir, "--brokers", broker, "--topic", topic,
                       "ingest", "--until-caught-up", env={"GATEMETER_LOG": "info"})
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(messages) + b"\n")
    imported = gatemeter("--data-dir", data_dir, "import", events_file,
                         env={"GATEMETER_LOG": "info"})
    # The free-form fields are stored with the values replaced; the closed
    # sets, numbers and times are dead letters.
    stored = support.query(f"SELECT count(*) FROM {support.parquet_source(data_dir)}")
    dead = support.dead_letters(data_dir)
    assert len(dead) == 2 * 5 * len(CANARIES), len(dead)
    assert stored[0][0] + len(dead) == 2 * len(messages)

    assert folder_leaks(data_dir) == {}
    for output in (ingest, imported):
        assert leaks((output.stdout + output.stderr).encode()) == []

    with support.serving(tmp_path, data_dir, env={"GATEMETER_LOG": "info"}) as served:
        base = served["base"]
        status, _, body = http("POST", base + "/api/v1/sql", {
            "sql": "SELECT table_name FROM information_schema.tables "
                   "WHERE table_schema = 'public'"})
        tables = [row["table_name"] for row in json.loads(body)["rows"]]
        assert "attempts" in tables, tables
        answers = []
        for table in tables:
            status, _, body = http("POST", base + "/api/v1/sql", {"sql": f"SELECT * FROM {table}"})
            assert status == 200, (table, body[:300])
            answers.append(body)
        for dimension in ["team", "app", "provider", "requested_model", "environment"]:
            status, _, body = http("GET", base + f"/api/v1/kpis?from=2026-11-01T00:00:00Z"
                                   f"&to=2026-11-02T00:00:00Z&group_by={dimension}")
            assert status == 200, body[:300]
            answers.append(body)
        answers.append(http("GET", base + "/metrics")[2])
        for answer in answers:
            assert leaks(answer) == [], answer[:500]
    log = served["log"].read_bytes()
    assert b"INFO" in log, log[-500:]
    assert leaks(log) == []
