"""Tokens, roles and team scopes on the real binary: tokens made by
`gatemeter token create`, HTTP bearer checks per role, a team-scoped token
seeing only its team in KPIs and SQL, psql refused without or with a wrong
password and scoped with the right one, and a listener outside loopback
refused without tokens."""

import json

import pytest

import support
from support import gatemeter, http

TEAM = "search"


def create_token(token_id, role, *teams):
    """(token, [[auth.tokens]] entry) as `gatemeter token create` prints them."""
    args = ["token", "create", "--id", token_id, "--role", role]
    for team in teams:
        args += ["--team", team]
    result = gatemeter(*args)
    token = result.stdout.strip()
    entry = result.stderr[result.stderr.index("[[auth.tokens]]"):]
    assert token.startswith("gmt_") and token not in entry
    return token, entry


def bearer(base, path, token=None, body=None, headers_out=None):
    method = "POST" if body is not None else "GET"
    return http(method, base + path, body=body, token=token, headers_out=headers_out, timeout=60)


def psql(port, user, sql, password=None):
    return support.psql(port, sql, user=user, password=password)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("auth")
    data_dir = support.imported_lake(work, requests=1500, seed=41)
    tokens = {}
    entries = []
    for token_id, role, teams in [("viewer-search", "viewer", [TEAM]),
                                  ("finance-search", "finance", [TEAM]),
                                  ("ops", "admin", [])]:
        token, entry = create_token(token_id, role, *teams)
        tokens[token_id] = token
        entries.append(entry)
    config = work / "gatemeter.toml"
    config.write_text("\n".join(entries))
    with support.serving(work, data_dir, "--config", config) as served:
        yield {**served, "tokens": tokens, "data_dir": data_dir}


def test_http_checks_tokens_and_roles(served):
    base, tokens = served["base"], served["tokens"]
    assert bearer(base, "/healthz")[0] == 200
    headers = {}
    status, _, _ = bearer(base, "/api/v1/kpis", headers_out=headers)
    assert status == 401 and "Bearer" in headers.get("www-authenticate", ""), headers
    assert bearer(base, "/api/v1/kpis", token="gmt_" + "0" * 64)[0] == 401
    viewer, finance, admin = tokens["viewer-search"], tokens["finance-search"], tokens["ops"]
    assert bearer(base, "/api/v1/kpis", token=viewer)[0] == 200
    status, _, body = bearer(base, "/api/v1/sql", token=viewer, body={"sql": "SELECT 1"})
    assert status == 403 and b"finance" in body, body
    assert bearer(base, "/api/v1/queries", token=viewer)[0] == 403
    assert bearer(base, "/metrics", token=finance)[0] == 403
    assert bearer(base, "/metrics", token=admin)[0] == 200
    assert bearer(base, "/api/v1/sql", token=finance, body={"sql": "SELECT 1"})[0] == 200


def test_a_scoped_token_sees_only_its_team(served):
    base, tokens = served["base"], served["tokens"]
    window = "from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z"
    status, _, body = bearer(base, f"/api/v1/kpis?{window}&group_by=team",
                             token=tokens["viewer-search"])
    assert status == 200, body
    assert [row["team"] for row in json.loads(body)["rows"]] == [TEAM]
    status, _, everything = bearer(base, f"/api/v1/kpis?{window}&group_by=team",
                                   token=tokens["ops"])
    rows = json.loads(everything)["rows"]
    assert len(rows) > 1
    # The scoped KPIs are the unscoped ones of that team.
    unscoped_search = [row for row in rows if row["team"] == TEAM]
    assert json.loads(body)["rows"] == unscoped_search
    status, _, body = bearer(base, f"/api/v1/kpis?{window}", token=tokens["viewer-search"])
    _, _, filtered = bearer(base, f"/api/v1/kpis?{window}&team={TEAM}",
                                          token=tokens["ops"])
    assert json.loads(body)["rows"] == json.loads(filtered)["rows"]
    for sql in ["SELECT DISTINCT team FROM attempts",
                "WITH r AS (SELECT * FROM requests) SELECT DISTINCT team FROM r",
                "SELECT DISTINCT team FROM attempts_raw UNION SELECT team FROM attempts_lake_fresh"]:
        status, _, body = bearer(base, "/api/v1/sql", token=tokens["finance-search"],
                                 body={"sql": sql})
        assert status == 200, body
        assert {row["team"] for row in json.loads(body)["rows"]} == {TEAM}, sql


def test_psql_needs_the_token_as_password_and_is_scoped(served):
    port, tokens = served["pg"], served["tokens"]
    sql = "SELECT DISTINCT team FROM attempts ORDER BY team"
    missing = psql(port, "finance-search", sql)
    assert missing.returncode != 0, missing.stdout
    wrong = psql(port, "finance-search", sql, password="gmt_" + "1" * 64)
    assert wrong.returncode != 0 and "password" in wrong.stderr.lower(), wrong.stderr
    viewer = psql(port, "viewer-search", sql, password=tokens["viewer-search"])
    assert viewer.returncode != 0, "a viewer token has no SQL"
    good = psql(port, "finance-search", sql, password=tokens["finance-search"])
    assert good.returncode == 0, good.stderr
    assert good.stdout.split() == [TEAM]
    admin = psql(port, "ops", sql, password=tokens["ops"])
    assert admin.returncode == 0, admin.stderr
    assert len(admin.stdout.split()) > 1


def test_a_listener_outside_loopback_needs_tokens(tmp_path):
    result = gatemeter("--data-dir", tmp_path / "lake", "--http-listen",
                       f"0.0.0.0:{support.free_port()}", "serve", "--roles", "api", check=False)
    assert result.returncode != 0
    assert "--insecure-open" in result.stderr, result.stderr
