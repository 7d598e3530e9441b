"""deploy/prometheus: targets match the stack, the rules are checked by promtool."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.unit.deploy.support import (
    DEPLOY,
    metrics_port,
    puente_services,
    services,
    yaml_file,
)

PROMETHEUS = DEPLOY / "prometheus"
ALERTS = {
    "PuenteServiceDown",
    "PuenteRejectionsSpike",
    "PuenteDeliveryLatencyHigh",
    "PuenteConsumerLagGrowing",
    "PuenteOutboxGrowing",
}


def scrape_jobs() -> dict[str, list[str]]:
    config = yaml_file(PROMETHEUS / "prometheus.yml")
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }


def alerts() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        for group in yaml_file(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found[rule["alert"]] = rule
    return found


def test_every_hub_service_is_scraped_under_its_compose_name_and_port() -> None:
    jobs = scrape_jobs()
    hub = {
        name for name, spec in puente_services().items() if spec["command"][0] == "run"
    }
    assert hub <= set(jobs)
    for name in hub:
        assert jobs[name] == [f"{name}:{metrics_port(name)}"]


def test_every_target_is_a_compose_service_on_its_real_port() -> None:
    for job, targets in scrape_jobs().items():
        for target in targets:
            host, port = target.rsplit(":", 1)
            if host == "localhost":
                assert job == "prometheus"
                continue
            assert host in services(), f"{job} scrapes {host}, no such service"
            assert int(port) == metrics_port(host)


def test_the_service_down_alert_watches_exactly_the_scraped_hub_services() -> None:
    expr = alerts()["PuenteServiceDown"]["expr"]
    watched = set(expr.split('job=~"')[1].split('"')[0].split("|"))
    hub = {
        name for name, spec in puente_services().items() if spec["command"][0] == "run"
    }
    assert watched == hub
    assert watched <= set(scrape_jobs())


def test_the_alerts_the_issue_asks_for_exist_with_a_severity_and_a_summary() -> None:
    found = alerts()
    assert set(found) >= ALERTS
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


def test_at_least_three_alerts_have_promtool_unit_tests() -> None:
    tested = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml_file(path)["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", [])}
    assert len(tested & ALERTS) >= 3
    assert tested >= ALERTS


def test_prometheus_is_mounted_with_this_config_in_the_stack() -> None:
    spec = services()["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in spec["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in spec["command"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_config_the_rules_and_their_unit_tests() -> None:
    done = subprocess.run(
        ["sh", str(PROMETHEUS / "check.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
