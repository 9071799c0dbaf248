"""`gatemeter rules export` writes Prometheus rules that promtool accepts,
the committed copy in dashboards/prometheus/ is what the example config
exports, and its promtool unit test proves the page alert fires on a
synthetic 20% error burst."""

import subprocess

from support import ROOT, gatemeter

RULES = ROOT / "dashboards" / "prometheus" / "gatemeter-slo-rules.yml"
RULES_TEST = ROOT / "dashboards" / "prometheus" / "gatemeter-slo-rules.test.yml"


def promtool(*args, cwd=None):
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_exported_rules_pass_promtool_and_the_page_alert_fires(tmp_path):
    exported = tmp_path / "rules.yml"
    gatemeter("--config", "config/gatemeter.toml", "rules", "export", "-o", exported, cwd=ROOT)
    check = promtool("check", "rules", exported)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    assert exported.read_text() == RULES.read_text(), "re-export dashboards/prometheus/gatemeter-slo-rules.yml"
    unit = promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_without_slos_the_export_is_an_empty_rule_file(tmp_path):
    config = tmp_path / "empty.toml"
    config.write_text("[alerts]\ninterval_seconds = 10\n")
    exported = tmp_path / "rules.yml"
    gatemeter("--config", config, "rules", "export", "-o", exported)
    check = promtool("check", "rules", exported)
    assert check.returncode == 0, check.stdout + check.stderr


def test_notification_targets_off_the_allowlist_are_refused_at_config_load(tmp_path):
    config = tmp_path / "alerts.toml"
    refused = {
        "http://localhost:9093": "not on the allowlist",
        "http://[::1]:9093": "not on the allowlist",
        "http://169.254.169.254/latest": "not on the allowlist",
        "http://10.0.0.7:9093": "not on the allowlist",
        "http://0x7f000001:9094": "not on the allowlist",
        "http://am.localtest:9093": "not on the allowlist",
    }
    for target, reason in refused.items():
        config.write_text(f'[alerts]\nallowlist = ["127.0.0.1:9093", "localhost:8443"]\nalertmanager_url = "{target}"\n')
        result = gatemeter("--config", config, "rules", "export", check=False)
        assert result.returncode != 0, target
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith("gatemeter: error: config") and "alertmanager_url" in error and reason in error, error
    # On the list by name, but the name resolves to loopback: refused too.
    config.write_text('[alerts]\nallowlist = ["localhost:8443"]\nwebhook_urls = ["https://localhost:8443/hook"]\n')
    result = gatemeter("--config", config, "rules", "export", check=False)
    assert result.returncode != 0 and "internal address" in result.stderr, result.stderr
    config.write_text('[alerts]\nallowlist = ["127.0.0.1:9093"]\nalertmanager_url = "http://127.0.0.1:9093"\n')
    assert gatemeter("--config", config, "rules", "export").returncode == 0
