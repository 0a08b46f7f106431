"""Alert rules are valid, each is unit-tested with promtool and has a runbook section."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.tools import debian_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


def alert_names() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = debian_tool("promtool", "prometheus")
    checked = subprocess.run([str(promtool), "check", "rules", "alerts.yml"], cwd=PROMETHEUS,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([str(promtool), "test", "rules", "alerts_test.yml"],
                            cwd=PROMETHEUS, capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_fires_in_a_test_and_has_a_runbook_section() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    fired = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]
             if case.get("exp_alerts")}
    runbook = (DEPLOY / "RUNBOOK.md").read_text()
    sections = set(re.findall(r"^## (\w+)$", runbook, flags=re.MULTILINE))
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for name in alert_names():
        assert name in fired, f"{name}: no test shows it firing"
        assert name in sections, f"{name}: no runbook section"
        assert f"- [{name}](#{name.lower()})" in runbook, f"{name}: not in the contents"
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        notes = rule["annotations"]
        assert notes.get("description") and notes.get("summary"), rule["alert"]
        assert notes["runbook_url"].endswith(f"RUNBOOK.md#{rule['alert'].lower()}")


def test_alertmanager_config_is_valid_and_routes_to_people() -> None:
    amtool = debian_tool("amtool", "prometheus-alertmanager")
    checked = subprocess.run([str(amtool), "check-config", "alertmanager.yml"],
                             cwd=DEPLOY / "alertmanager", capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    assert all(r.get("email_configs") or r.get("webhook_configs") for r in config["receivers"])
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
