"""TLS and the audit log on the real binary: a certificate made by openssl,
HTTPS checked by Python's ssl module, psql with sslmode=verify-full and
psycopg's extended protocol over TLS, plaintext refused on both ports; then
every request, login and statement found in the audit log with its token,
teams, SQL hash, rows and status, and no token in it."""

import hashlib
import http.client
import json
import shutil
import ssl
import subprocess
import urllib.error

import psycopg
import pytest

import support
from support import http as request
from test_auth import create_token

TEAM = "search"


def make_certificate(folder):
    """A self-signed P-256 certificate for localhost and 127.0.0.1."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [shutil.which("openssl") or "/usr/bin/openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def audit_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    data_dir = support.imported_lake(work, requests=800, seed=43)
    cert, key = make_certificate(work)
    token, entry = create_token("finance-search", "finance", TEAM)
    audit_log = work / "audit" / "audit.log"
    config = work / "gatemeter.toml"
    config.write_text(
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n\n'
        f'[audit]\nfile = "{audit_log}"\nkeep = 2\n\n' + entry
    )
    context = ssl.create_default_context(cafile=str(cert))
    with support.serving(work, data_dir, "--config", config, tls=context) as served:
        yield {**served, "token": token, "cert": cert, "tls": context, "audit_log": audit_log}


def verified(served):
    return {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(served["cert"])}


def test_https_is_served_and_plain_http_is_not(served):
    base, token, tls = served["base"], served["token"], served["tls"]
    assert base.startswith("https://")
    sql = "SELECT request_id FROM attempts ORDER BY request_id LIMIT 5"
    status, _, body = request("POST", base + "/api/v1/sql", {"sql": sql}, token=token, tls=tls)
    assert status == 200, body[:300]
    assert len(json.loads(body)["rows"]) == 5
    assert request("GET", base + "/api/v1/kpis", tls=tls)[0] == 401
    # Plain HTTP gets a TLS alert back, never an HTTP answer.
    with pytest.raises((http.client.HTTPException, OSError)):
        request("GET", base.replace("https://", "http://") + "/healthz", timeout=5)
    # A client that does not trust the certificate does not get in.
    with pytest.raises(urllib.error.URLError) as untrusted:
        request("GET", base + "/healthz", tls=ssl.create_default_context(), timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)


def test_postgres_requires_tls_and_verifies(served):
    port, token = served["pg"], served["token"]
    done = support.psql(port, "SELECT request_id FROM attempts LIMIT 7", user="finance-search",
                        password=token, ssl=verified(served))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 7
    plain = support.psql(port, "SELECT 1", user="finance-search", password=token,
                         ssl={"PGSSLMODE": "disable"})
    assert plain.returncode != 0 and "TLS" in plain.stderr, plain.stderr
    wrong = support.psql(port, "SELECT 1", user="finance-search", password="gmt_wrong",
                         ssl=verified(served))
    assert wrong.returncode != 0 and "password" in wrong.stderr.lower(), wrong.stderr
    with psycopg.connect(host="127.0.0.1", port=port, dbname="gatemeter", user="finance-search",
                         password=token, sslmode="verify-full",
                         sslrootcert=str(served["cert"])) as connection:
        rows = connection.execute("SELECT team FROM attempts LIMIT %s", (3,)).fetchall()
    assert rows == [(TEAM,)] * 3


def test_the_audit_log_records_every_request_login_and_statement(served):
    base, token, tls = served["base"], served["token"], served["tls"]
    sql = "SELECT team, count(*) AS n FROM attempts GROUP BY team"
    assert request("POST", base + "/api/v1/sql", {"sql": sql}, token=token, tls=tls)[0] == 200
    assert request("GET", base + "/api/v1/kpis?group_by=nope", token=token, tls=tls)[0] == 400
    assert support.psql(served["pg"], "SELECT request_id FROM attempts LIMIT 4",
                        user="finance-search", password=token,
                        ssl=verified(served)).returncode == 0
    lines = audit_lines(served["audit_log"])
    text = served["audit_log"].read_text()
    assert token not in text

    def find(**wanted):
        return [line for line in lines if all(line.get(k) == v for k, v in wanted.items())]

    [query] = find(protocol="http", endpoint="POST /api/v1/sql", sql=sql)
    assert query["token_id"] == "finance-search" and query["role"] == "finance"
    assert query["teams"] == [TEAM]
    assert query["sql_sha256"] == hashlib.sha256(sql.encode()).hexdigest()
    assert query["rows"] == 1 and query["status"] == "200" and query["bytes"] > 0
    assert query["peer"].startswith("127.0.0.1:") and query["duration_ms"] >= 0
    assert find(endpoint="GET /api/v1/kpis?group_by=nope", status="400")
    refused = find(protocol="http", status="401")
    assert refused and all(line["token_id"] is None for line in refused)

    pg_logins = find(protocol="postgres", endpoint="login")
    statuses = sorted(line["status"] for line in pg_logins)
    assert "ok" in statuses and "28P01" in statuses and "28000" in statuses, statuses
    assert all(line["token_id"] == "finance-search" for line in pg_logins)
    # psql sends the statement as written, with its semicolon.
    [simple] = find(protocol="postgres", endpoint="query",
                    sql="SELECT request_id FROM attempts LIMIT 4;")
    assert simple["rows"] == 4 and simple["status"] == "ok" and simple["bytes"] > 0
    [extended] = find(protocol="postgres", endpoint="execute",
                      sql="SELECT team FROM attempts LIMIT $1")
    assert extended["rows"] == 3 and extended["teams"] == [TEAM]
    assert not find(endpoint="GET /healthz")
