"""Helpers for gatemeter's end-to-end tests: run the real binary, talk to a
real Kafka-protocol broker through a client we did not write (Python
confluent-kafka), and read the lake with an engine we did not write (DuckDB)."""

import glob
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import time

import duckdb
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parents[2]


def gatemeter_bin():
    path = os.environ.get("GATEMETER_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")), "debug", "gatemeter"
    )
    assert os.path.exists(path), f"gatemeter binary not found at {path}: run scripts/test.sh"
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def start_prometheus(folder, target):
    """A real Prometheus on a free loopback port scraping `target`
    (HOST:PORT) every second; returns (process, base URL). Stop it with
    terminate()."""
    port = free_port()
    config = pathlib.Path(folder) / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: gatemeter\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    process = subprocess.Popen(
        [shutil.which("prometheus") or "/usr/bin/prometheus", f"--config.file={config}",
         f"--storage.tsdb.path={pathlib.Path(folder) / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process, f"http://127.0.0.1:{port}"


def gatemeter(*args, env=None, check=True, timeout=600, cwd=None):
    full_env = dict(os.environ, GATEMETER_LOG="warn")
    full_env.update(env or {})
    result = subprocess.run(
        [gatemeter_bin(), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"gatemeter {' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
    return result


def generate_events(path, requests, seed=1, start="2026-11-01T00:00:00Z", extra=()):
    """Synthetic gateway events as JSON lines, from `gatemeter produce --output`."""
    gatemeter(
        "produce", "--output", path, "--count", requests, "--rate", 0,
        "--seed", seed, "--start", start, *extra,
    )
    with open(path, "rb") as f:
        return [line.rstrip(b"\n") for line in f if line.strip()]


BAD_CLASSES = [
    "invalid_json", "not_an_object", "missing_field", "wrong_type", "invalid_enum",
    "bad_timestamp", "out_of_range", "unsupported_version", "oversize",
]


def corrupt(good: bytes, bad_class: str, rng: random.Random) -> bytes:
    """A bad event of the given dead-letter class, derived from a good one."""
    event = json.loads(good)
    if bad_class == "invalid_json":
        return good[: rng.randrange(1, len(good) - 1)]
    if bad_class == "not_an_object":
        return rng.choice([b"42", b'"text"', b"null", b"[1]"])
    if bad_class == "missing_field":
        del event[rng.choice(["attempt_id", "request_id", "provider", "outcome", "request_start"])]
    elif bad_class == "wrong_type":
        field, value = rng.choice([("attempt_index", "0"), ("is_final", "yes"), ("provider", 7)])
        event[field] = value
    elif bad_class == "invalid_enum":
        field = rng.choice(["attempt_kind", "outcome"])
        event[field] = "definitely_not_listed"
    elif bad_class == "bad_timestamp":
        event["attempt_start"] = "31/12/2026 noon"
    elif bad_class == "out_of_range":
        event["request_start"] = 1_700_000_000  # seconds, not milliseconds
    elif bad_class == "unsupported_version":
        event["schema_version"] = 2
    elif bad_class == "oversize":
        event["tags"] = {"padding": "x" * (1 << 20)}
    return json.dumps(event).encode()


def mix_bad_events(good_lines, bad_share, seed, oversize_max=5):
    """Interleaves bad events among good ones: returns [(key, payload, expected_class)]."""
    rng = random.Random(seed)
    total = len(good_lines)
    n_bad = int(total * bad_share)
    classes = [c for c in BAD_CLASSES if c != "oversize"]
    bad_classes = ["oversize"] * min(oversize_max, n_bad)
    while len(bad_classes) < n_bad:
        bad_classes.append(classes[len(bad_classes) % len(classes)])
    positions = set(rng.sample(range(total), n_bad))
    messages = []
    bad_iter = iter(bad_classes)
    for i, line in enumerate(good_lines[: total - n_bad]):
        key = json.loads(line)["request_id"].encode()
        if i in positions:
            cls = next(bad_iter, None)
            if cls:
                messages.append((key, corrupt(line, cls, rng), cls))
        messages.append((key, line, None))
    for cls in bad_iter:  # positions past the end of the shortened list
        line = good_lines[rng.randrange(total - n_bad)]
        messages.append((json.loads(line)["request_id"].encode(), corrupt(line, cls, rng), cls))
    return messages


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=30)


def produce(bootstrap, topic, messages, partitions=4):
    """Produces [(key, payload, expected)] with confluent-kafka; returns
    [(partition, offset, expected)] from the delivery reports."""
    create_topic(bootstrap, topic, partitions)
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 20,
        "compression.type": "lz4",
        "message.max.bytes": 4 << 20,
        "queue.buffering.max.messages": 500000,
    })
    delivered = []
    errors = []

    def on_delivery(expected):
        def callback(err, msg):
            if err is not None:
                errors.append(err)
            else:
                delivered.append((msg.partition(), msg.offset(), expected))
        return callback

    for key, payload, expected in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=payload, on_delivery=on_delivery(expected))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors: {errors[:3]}"
    assert len(delivered) == len(messages)
    return delivered


def attempts_glob(data_dir):
    return f"{data_dir}/attempts/**/*.parquet"


def query(sql, params=None):
    con = duckdb.connect()
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def lake_positions(data_dir):
    """(_partition, _offset) of every row of the attempts table, via DuckDB."""
    if not glob.glob(attempts_glob(data_dir), recursive=True):
        return []
    return query(
        f"SELECT _partition, _offset FROM read_parquet('{attempts_glob(data_dir)}', hive_partitioning = true)"
    )


def dead_letters(data_dir):
    files = f"{data_dir}/dead_letters/*.parquet"
    if not glob.glob(files):
        return []
    return query(f"SELECT partition, \"offset\", error_class, field, payload_size FROM read_parquet('{files}')")


def commit_records(data_dir):
    records = []
    for path in sorted(glob.glob(f"{data_dir}/_gatemeter/commits/*.json")):
        with open(path) as f:
            records.append(json.load(f))
    return records


def committed_files(data_dir):
    """Every file a commit record names: live, or replaced by compaction."""
    names = set()
    for record in commit_records(data_dir):
        names.update(entry["path"] for entry in record["files"] + record["dead_letter_files"])
    return names


def live_attempt_files(data_dir):
    """The attempts table as of the last commit: {path: entry}, in log order."""
    live = {}
    for record in commit_records(data_dir):
        live.update((entry["path"], entry) for entry in record["files"])
        for path in record.get("removed", []):
            live.pop(path, None)
    return live


def files_on_disk(data_dir):
    found = set()
    for table in ("attempts", "dead_letters"):
        base = pathlib.Path(data_dir) / table
        if base.exists():
            found.update(str(p.relative_to(data_dir)) for p in base.rglob("*") if p.is_file())
    return found


def assert_exactly_once(data_dir, delivered):
    """Every good message is in the lake exactly once, every bad one is a dead
    letter with its class, and nothing else is there."""
    expected_good = {(p, o) for p, o, cls in delivered if cls is None}
    expected_bad = {(p, o, cls) for p, o, cls in delivered if cls is not None}
    rows = lake_positions(data_dir)
    assert len(rows) == len(set(rows)), f"{len(rows) - len(set(rows))} rows stored twice"
    missing = expected_good - set(rows)
    extra = set(rows) - expected_good
    assert not missing, f"{len(missing)} good events missing, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected rows, e.g. {sorted(extra)[:5]}"
    letters = dead_letters(data_dir)
    got_bad = {(p, o, cls) for p, o, cls, _field, _size in letters}
    assert len(letters) == len(got_bad), "a dead letter was stored twice"
    assert got_bad == expected_bad, (
        f"dead letters differ: missing {sorted(expected_bad - got_bad)[:5]}, extra {sorted(got_bad - expected_bad)[:5]}"
    )
