"""deploy/Dockerfile: pinned base, non-root, runtime dependencies only, `puente` entry."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from typing import Final

from packaging.requirements import Requirement

from services.runtime.settings import REPO_ROOT
from tests.unit.test_layers import BENCH_MODULES, tooling_paths

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"


def text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def test_the_base_image_is_a_pinned_slim_python() -> None:
    [image] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text(), re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image)
    froms = re.findall(r"^FROM (\S+)", text(), re.MULTILINE)
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_the_service_runs_as_a_fixed_non_root_user_with_puente_as_entry_point() -> None:
    users = re.findall(r"^USER (\S+)$", text(), re.MULTILINE)
    # Numeric, so runtimes that check runAsNonRoot can tell without /etc/passwd.
    assert users[-1] == "10001:10001"
    assert "--uid 10001" in text()
    assert "--gid 10001" in text()
    assert re.search(r'^ENTRYPOINT \["puente"\]$', text(), re.MULTILINE)


def test_the_image_installs_the_project_without_development_extras() -> None:
    installs = re.findall(r"pip install ([^\n\\&]+)", text())
    assert installs == [". "], installs
    commands = [line for line in text().splitlines() if not line.startswith("#")]
    assert not any("[dev]" in line for line in commands)
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    rules = [line for line in ignore.splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "the build context starts from nothing"
    for kept in ("services/", "schemas/", "deploy/policy/", "pyproject.toml"):
        assert f"!{kept}" in ignore


def test_the_image_leaves_every_tooling_folder_and_module_out() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    rules = [line for line in ignore.splitlines() if line and not line.startswith("#")]
    # Later rules win: each exclusion must come after `!services/` lets services in.
    after = rules[rules.index("!services/") + 1 :]
    assert sorted(set(tooling_paths()) - set(after)) == []


# Tooling code -> the extra that brings what it imports beyond the product's needs.
TOOLING_EXTRAS: Final = {
    "services/sim": "demo",
    "services/demo": "demo",
    "services/fuzz": "fuzz",
    "services/kafkalocal": None,
    **{m.replace(".", "/") + ".py": "bench" for m in BENCH_MODULES},
}
# Runtime dependencies no module imports by name: libraries pick them up when present.
PLUG_INS: Final = {"cramjam", "httptools"}


def test_every_third_party_module_the_product_imports_is_a_runtime_dependency() -> None:
    """What the image installs is what the product needs; tooling brings its extra."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = project["project"]["dependencies"]
    extras = project["project"]["optional-dependencies"]
    missing = {}
    groups = [(None, runtime)] + [
        (path, [*runtime, *(extras[extra] if extra else [])])
        for path, extra in TOOLING_EXTRAS.items()
    ]
    providers = metadata.packages_distributions()
    for path, requirements in groups:
        installed = closure(Requirement(r) for r in requirements)
        for module in imported_modules(path):
            dists = {normal(d) for d in providers.get(module, [module])}
            if not dists & installed:
                missing[f"{path or 'product'}: {module}"] = sorted(dists)
    assert not missing, f"imported but not installed with its extra: {missing}"


def test_every_runtime_dependency_is_imported_by_the_product() -> None:
    """No tooling library rides along in the image (aiohttp was one, for a bench)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    providers = metadata.packages_distributions()
    used = {normal(d) for m in imported_modules(None) for d in providers.get(m, [m])}
    declared = {normal(Requirement(r).name) for r in project["project"]["dependencies"]}
    assert sorted(declared - used - PLUG_INS) == []


def imported_modules(path: str | None) -> set[str]:
    """Third-party modules imported under ``path`` (a tooling folder or module), or,
    for None, by the product: everything under ``services/`` but the tooling."""
    if path is not None:
        target = REPO_ROOT / path
        files = [target] if target.suffix == ".py" else list(target.rglob("*.py"))
    else:
        tooling = [REPO_ROOT / p for p in TOOLING_EXTRAS]
        files = [
            p
            for p in (REPO_ROOT / "services").rglob("*.py")
            if not any(p == t or t in p.parents for t in tooling)
        ]
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "services"}


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """Distribution names the requirements install, transitively (with extras)."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = normal(requirement.name)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen |= {key, name}
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in map(Requirement, requires):
            wanted = spec.marker is None or any(
                spec.marker.evaluate({"extra": e}) for e in (extras or {""})
            )
            if wanted:
                todo.append((spec, frozenset(spec.extras)))
    return {s for s in seen if "[" not in s}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
