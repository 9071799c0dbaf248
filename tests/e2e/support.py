"""Helpers for gatemeter's end-to-end tests: run the real binary, talk to a
real Kafka-protocol broker through a client we did not write (Python
confluent-kafka), and read the lake with an engine we did not write (DuckDB)."""

import contextlib
import glob
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import duckdb
import pyarrow
from deltalake import DeltaTable
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


def http(method, url, body=None, accept=None, timeout=30, token=None, headers_out=None,
         tls=None):
    """(status, content type, body bytes) of one request; `token` is sent
    as a bearer token; `headers_out`, a dict, receives the answer's headers
    (names in lower case); `tls`, an ssl.SSLContext, for https URLs."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if accept:
        request.add_header("accept", accept)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        response = urllib.request.urlopen(request, timeout=timeout, context=tls)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        if headers_out is not None:
            headers_out.update({k.lower(): v for k, v in response.headers.items()})
        status = response.status if hasattr(response, "status") else response.code
        return status, response.headers.get("content-type", ""), response.read()


def psql(port, sql, user="gatemeter", password=None, ssl=None):
    """`sql` through Debian's psql (simple protocol), fed on stdin as a long
    statement would not fit on a command line; no PG* variables of the
    caller leak in. `ssl`: libpq TLS variables (PGSSLMODE, PGSSLROOTCERT).
    Returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    env.update(ssl or {})
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-d", "gatemeter", "-U", user, "-w", "-X",
         "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=sql + ";\n", capture_output=True, text=True, timeout=120, env=env,
    )


@contextlib.contextmanager
def serving(work, data_dir, *flags, env=None, tls=None):
    """`gatemeter serve --roles api` over `data_dir` with HTTP and PostgreSQL
    on free loopback ports, its log in `work/serve.log` (a pipe nobody reads
    would fill and stall it); yields {"base", "pg", "process", "log"} once
    ready, then stops it with SIGTERM. `tls`: an ssl.SSLContext trusting the
    certificate the flags give it (the base URL is then https)."""
    http_port, pg_port = free_port(), free_port()
    log_path = pathlib.Path(work) / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [gatemeter_bin(), "--data-dir", str(data_dir), "--http-listen",
             f"127.0.0.1:{http_port}", "--pg-listen", f"127.0.0.1:{pg_port}", *map(str, flags),
             "serve", "--roles", "api"],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})),
        )
        try:
            wait_ready(http_port, tls=tls)
            wait_for_port(pg_port)
            scheme = "https" if tls else "http"
            yield {"base": f"{scheme}://127.0.0.1:{http_port}", "pg": pg_port,
                   "process": process, "log": log_path}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def wait_ready(port, timeout=30.0, tls=None):
    """Waits until gatemeter on `port` answers /readyz with 200 (over
    https with the ssl.SSLContext `tls`)."""
    wait_for_port(port, timeout)
    deadline = time.time() + timeout
    scheme = "https" if tls else "http"
    while http("GET", f"{scheme}://127.0.0.1:{port}/readyz", tls=tls)[0] != 200:
        assert time.time() < deadline, "never ready"
        time.sleep(0.1)


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


def imported_lake(work, requests, seed, start="2026-11-01T10:00:00Z"):
    """A lake at `work/lake` of `requests` synthetic requests, imported."""
    events = pathlib.Path(work) / "events.jsonl"
    generate_events(events, requests=requests, seed=seed, start=start)
    data_dir = pathlib.Path(work) / "lake"
    gatemeter("--data-dir", data_dir, "import", events)
    return data_dir


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


def produce(bootstrap, topic, messages, partitions=4, create=True):
    """Produces [(key, payload, expected)] with confluent-kafka (into a new
    topic of `partitions` unless `create` is false); returns
    [(partition, offset, expected)] from the delivery reports."""
    if create:
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


def delta_table(data_dir, table="attempts"):
    """The lake's table as the Python `deltalake` reader sees it, or None
    while no writer has created it."""
    path = pathlib.Path(data_dir) / table
    if not (path / "_delta_log").is_dir():
        return None
    return DeltaTable(str(path))


def add_actions(data_dir, table="attempts"):
    """The current version's Add actions: [{path, size_bytes, num_records, ...}]."""
    dt = delta_table(data_dir, table)
    if dt is None:
        return []
    return pyarrow.table(dt.get_add_actions(flatten=True)).to_pylist()


def live_files(data_dir, table="attempts"):
    """Lake-relative paths of the files the table's current version names."""
    return {f"{table}/{action['path']}" for action in add_actions(data_dir, table)}


def live_attempt_files(data_dir):
    """The attempts table as of its current version: {path: {rows, deduplicated}}."""
    return {
        f"attempts/{a['path']}": {"rows": a["num_records"], "deduplicated": "/compacted-" in f"/{a['path']}"}
        for a in add_actions(data_dir)
    }


def committed_files(data_dir):
    """Every file the current versions of both tables name."""
    return live_files(data_dir, "attempts") | live_files(data_dir, "dead_letters")


def history(data_dir, table="attempts"):
    """The table's commits, oldest first."""
    dt = delta_table(data_dir, table)
    return [] if dt is None else list(reversed(dt.history()))


def parquet_source(data_dir, table="attempts"):
    """A DuckDB table expression over exactly the committed files of `table`
    (the folder may also hold files no commit names yet)."""
    files = sorted(str(pathlib.Path(data_dir) / path) for path in live_files(data_dir, table))
    if not files:
        return None
    hive = ", hive_partitioning = true" if table == "attempts" else ""
    return f"read_parquet({files!r}{hive})"


def query(sql, params=None, tables=None):
    """Runs `sql` in a fresh DuckDB; `tables` maps names to Arrow tables."""
    con = duckdb.connect()
    try:
        for name, table in (tables or {}).items():
            con.register(name, table)
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def lake_positions(data_dir):
    """(_partition, _offset) of every row of the attempts table, via DuckDB."""
    source = parquet_source(data_dir)
    if source is None:
        return []
    return query(f"SELECT _partition, _offset FROM {source}")


def dead_letters(data_dir):
    source = parquet_source(data_dir, "dead_letters")
    if source is None:
        return []
    return query(f"SELECT partition, \"offset\", error_class, field, payload_size FROM {source}")


def files_on_disk(data_dir):
    found = set()
    for table in ("attempts", "dead_letters"):
        base = pathlib.Path(data_dir) / table
        if base.exists():
            found.update(str(p.relative_to(data_dir)) for p in base.rglob("*")
                         if p.is_file() and "_delta_log" not in p.parts)
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
