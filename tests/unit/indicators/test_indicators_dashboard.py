"""deploy/grafana/dashboards/indicators.json: one row per working group."""

from __future__ import annotations

import json
import tomllib
from typing import Any

from services.runtime.settings import REPO_ROOT

BOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "indicators.json"
INSTITUTIONS = REPO_ROOT / "deploy" / "policy" / "institutions.toml"


def board() -> dict[str, Any]:
    loaded = json.loads(BOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_every_working_group_has_a_row_querying_its_indicator_totals() -> None:
    groups = tomllib.loads(INSTITUTIONS.read_text(encoding="utf-8"))["working_groups"]
    panels = board()["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    for ident, name in groups.items():
        assert f"Working group: {name}" in rows
        exprs = [t["expr"] for p in panels if p["type"] != "row" for t in p["targets"]]
        assert any(f'working_group="{ident}"' in e for e in exprs), ident
        assert all("puente_" in e for e in exprs)


def test_panels_have_ids_descriptions_and_do_not_overlap() -> None:
    panels = board()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}  # fmt: skip
        assert g["x"] + g["w"] <= 24
        assert not cells & taken, p["title"]
        taken |= cells
        if p["type"] != "row":
            assert p["description"]
            assert p["datasource"]["uid"] == "prometheus"
    assert board()["uid"] == "puente-indicators"
