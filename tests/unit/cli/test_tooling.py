"""Tooling commands exist where their code is installed, and explain themselves where not.

The production image leaves the tooling code out; a fresh interpreter that cannot
import any tooling module stands in for it here.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Final

from typer.testing import CliRunner

from services.cli import TOOLING, app
from services.runtime.settings import REPO_ROOT
from tests.unit.test_layers import BENCH_MODULES, TOOLING_PACKAGES

TOOLING_MODULES: Final = [f"services.{p}" for p in TOOLING_PACKAGES] + list(BENCH_MODULES)
# Runs `puente` with every tooling module unimportable, as in the production image.
WITHOUT_TOOLING: Final = f"""
import sys

BLOCKED = {TOOLING_MODULES!r}


class Blocked:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Blocked())
from services.cli import main

sys.argv = ["puente", *sys.argv[1:]]
main()
"""


def _puente_without_tooling(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TOOLING, *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def test_every_tooling_command_is_registered_when_its_code_is_installed() -> None:
    runner = CliRunner()
    for name in TOOLING:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "not installed" not in result.output


def test_a_missing_tooling_command_names_its_extra_in_one_line() -> None:
    for name, (extra, _) in TOOLING.items():
        result = _puente_without_tooling(name, "--rate", "5")
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"`puente {name}`" in lines[0]
        assert f"puente[{extra}]" in lines[0]


def test_the_product_commands_work_without_any_tooling() -> None:
    result = _puente_without_tooling("--help")
    assert result.returncode == 0, result.stderr
    for command in ("up", "run", "policy", "audit", "acl"):
        assert command in result.stdout
    assert "not installed" in result.stdout
    assert _puente_without_tooling("up", "--help").returncode == 0
