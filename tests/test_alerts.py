"""deploy/alerts: the rule file is valid Prometheus and its promtool unit tests (each alert firing and not) pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ALERTS = Path(__file__).resolve().parent.parent / "deploy" / "alerts"
RULES, TESTS = ALERTS / "pd-scaler.rules.yaml", ALERTS / "pd-scaler.rules.test.yaml"
EXPECTED = {
    "PdScalerDown": "critical",
    "PdScalerSourceDown": "warning",
    "PdScalerSourceStale": "warning",
    "PdScalerGrpcErrorRate": "warning",
    "PdScalerScaledObjectFailing": "warning",
    "PdScalerDecodePodsWithoutSeries": "info",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        raise RuntimeError("promtool is not installed: run `make test`, which installs prometheus (it ships promtool)")
    # From the rules' folder, so the test file's relative `rule_files` resolve.
    return subprocess.run(["promtool", *args], cwd=ALERTS, capture_output=True, text=True, timeout=60, check=False)


def test_rule_file_is_valid() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout


def test_one_group_of_alerts_with_severity_summary_and_description() -> None:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in groups] == ["pd-scaler"]
    rules = groups[0]["rules"]
    assert {r["alert"]: r["labels"]["severity"] for r in rules} == EXPECTED
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


def test_every_alert_is_unit_tested_firing_and_not() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    assert cases == {alert: {True, False} for alert in EXPECTED}


def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["Unit", "Testing:", TESTS.name, "SUCCESS"]
