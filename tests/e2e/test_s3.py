"""The lake on S3-compatible storage: a moto S3 server on 127.0.0.1 behind a
proxy that can refuse every PUT for a while. Import and Kafka ingest into
`s3://…` while PUTs fail (object_store retries; nothing is lost or stored
twice), then compaction and KPIs over the bucket equal those of the same
events in a local lake."""

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import support
from support import ROOT, gatemeter

PRICES = ROOT / "config" / "prices.csv"
BUCKET = "gatemeter-lake"


class FlakyProxy(BaseHTTPRequestHandler):
    """Forwards every request to the S3 server; answers PUTs with 503 while
    the server's `failing_until` lies ahead, and the next `refuse_puts`
    PUTs of a path holding every part of `refuse_path` whenever they come."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        counted = self.server.refuse_puts > 0 and all(part in self.path for part in self.server.refuse_path)
        if self.command == "PUT" and (time.monotonic() < self.server.failing_until or counted):
            if counted:
                self.server.refuse_puts -= 1
            self.server.refused += 1
            message = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for key, value in self.headers.items():
            upstream.putheader(key, value)
        upstream.endheaders(body or None)
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            # A HEAD answer's length is the object's, not its empty body's.
            keep = self.command == "HEAD" and key.lower() == "content-length"
            if keep or key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    moto = shutil.which("moto_server")
    assert moto, "moto is not installed: run scripts/test.sh"
    port = support.free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    support.wait_for_port(port)
    proxy = ThreadingHTTPServer(("127.0.0.1", support.free_port()), FlakyProxy)
    proxy.upstream_port = port
    proxy.failing_until = 0.0
    proxy.refuse_puts = 0
    proxy.refuse_path = ()
    proxy.refused = 0
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    import boto3
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.server_address[1]}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    yield {"proxy": proxy, "env": env}
    proxy.shutdown()
    server.terminate()
    server.wait(timeout=30)
    log.close()


def kpis(data_dir, env=None):
    rows = json.loads(gatemeter("--data-dir", data_dir, "--prices", PRICES, "kpis", "--group-by", "team,provider",
                                "--format", "json", env=env).stdout)
    return rows


def test_import_ingest_compact_and_kpis_on_s3_survive_refused_puts(s3, broker, topic, tmp_path):
    events = tmp_path / "events.jsonl"
    lines = support.generate_events(events, requests=3000, seed=31, start="2026-11-01T10:00:00Z",
                                    extra=("--simulated-rate", 0.5, "--duplicates", 0.02))
    local = tmp_path / "local"
    gatemeter("--data-dir", local, "import", events)
    expected = kpis(local)
    assert len(expected) > 5

    # Import while every PUT is refused for the first seconds.
    proxy = s3["proxy"]
    lake = f"s3://{BUCKET}/import-lake"
    proxy.failing_until = time.monotonic() + 3
    out = gatemeter("--data-dir", lake, "import", "--flush-rows", 500, events, env=s3["env"]).stdout
    assert f"stored {len(lines)} events, 0 dead letters" in out, out
    refused_import = proxy.refused
    assert refused_import > 0, "the proxy refused no PUT"
    assert kpis(lake, env=s3["env"]) == expected

    # Kafka ingest into another prefix, the first PUTs of its data files
    # refused (whenever the group has assigned it its partitions).
    support.produce(broker, topic, [(None, line, None) for line in lines], partitions=2)
    ingested = f"s3://{BUCKET}/kafka-lake"
    args = ["--brokers", broker, "--topic", topic, "--group", f"s3-{topic}", "--data-dir", ingested,
            "ingest", "--until-caught-up", "--flush-rows", 700]
    proc = subprocess.Popen([support.gatemeter_bin(), *map(str, args)], env=dict(os.environ, **s3["env"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proxy.refuse_path, proxy.refuse_puts = ("kafka-lake", ".parquet"), 4
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert proxy.refused > refused_import, "no PUT of the ingest was refused"
    assert f"stored {len(lines)} events" in out, out
    assert kpis(ingested, env=s3["env"]) == expected

    # Compaction in the bucket changes no number.
    result = gatemeter("--data-dir", ingested, "compact", env=s3["env"]).stdout
    assert result.startswith("compacted "), result
    assert kpis(ingested, env=s3["env"]) == expected
