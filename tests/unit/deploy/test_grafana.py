"""deploy/grafana: provisioning wired to the stack and a hub-overview dashboard."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.deploy.support import DEPLOY, services, yaml_file

GRAFANA = DEPLOY / "grafana"
OVERVIEW = GRAFANA / "dashboards" / "hub-overview.json"
# What issue 5 asks the overview to show, by the metric each panel must query.
REQUIRED = {
    "throughput in": "puente_events_accepted_total",
    "throughput out": "puente_deliveries_total",
    "rejections by reason": "puente_events_rejected_total",
    "deliveries by recipient and view": "puente_deliveries_total",
    "latency p50 / p99": "puente_delivery_latency_seconds_bucket",
    "consumer lag": "puente_consumer_lag",
    "outbox": "puente_outbox_depth",
}


def dashboard() -> dict[str, Any]:
    loaded = json.loads(OVERVIEW.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_the_datasource_is_the_stacks_prometheus_under_the_uid_panels_use() -> None:
    [source] = yaml_file(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in services()
    for panel in panels():
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]


def test_the_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    [provider] = yaml_file(GRAFANA / "provisioning" / "dashboards" / "puente.yml")[
        "providers"
    ]
    mounts = dict(m.split(":")[:2] for m in services()["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = services()["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert home == f"{provider['options']['path']}/{OVERVIEW.name}"


def test_the_overview_has_every_panel_the_issue_asks_for() -> None:
    by_title = {p["title"].lower(): p for p in panels()}
    for wanted, metric in REQUIRED.items():
        matching = [p for title, p in by_title.items() if wanted in title]
        assert matching, f"no panel for {wanted}"
        exprs = " ".join(t["expr"] for p in matching for t in p["targets"])
        assert metric in exprs, f"{wanted} does not query {metric}"
    latency = next(p for t, p in by_title.items() if "latency" in t)
    quantiles = {t["expr"].split("(")[1].split(",")[0] for t in latency["targets"]}
    assert quantiles == {"0.5", "0.99"}


def test_every_panel_has_a_query_a_description_and_its_own_id() -> None:
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_do_not_overlap_on_the_grid() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}  # fmt: skip
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_the_dashboard_has_a_stable_uid_and_is_read_only() -> None:
    board = dashboard()
    assert board["uid"] == "puente-hub-overview"
    assert board["editable"] is False
