"""The layer rule of the `services` package, read from the source (AST, no imports run).

Every module belongs to one component: its package under ``services`` (``router``,
``policy``, ...), or ``bench`` for the benchmark and test-server modules that live
beside the service they measure. A component may import only the components its row
names; imports inside functions and under ``TYPE_CHECKING`` count too, because they
are dependencies all the same.

| component                                       | may import                          |
|-------------------------------------------------|-------------------------------------|
| contracts (kernel)                              | nothing of ours                     |
| policy (kernel)                                 | contracts                           |
| runtime                                         | contracts, policy                   |
| router, gateway, audit, referrals, indicators,  | contracts, policy, runtime          |
| acl (services)                                  |                                     |
| hub (the assembly)                              | kernels, runtime, services          |
| cli                                             | everything                          |
| sim, kafkalocal (tooling)                       | kernels (kafkalocal: runtime too)   |
| demo, fuzz, bench (tooling)                     | product, sim, kafkalocal            |

Product (kernels, runtime, services, hub) never imports tooling: the
production image leaves the tooling out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2] / "services"

KERNELS: Final = frozenset({"contracts", "policy"})
SERVICES: Final = frozenset(
    {"router", "gateway", "audit", "referrals", "indicators", "acl"}
)
BELOW_SERVICES: Final = KERNELS | {"runtime"}
PRODUCT: Final = BELOW_SERVICES | SERVICES | {"hub"}
TOOLING_PACKAGES: Final = ("sim", "demo", "fuzz", "kafkalocal")
TOOLING: Final = frozenset({*TOOLING_PACKAGES, "bench"})
# Tooling modules that live inside a product package, beside what they measure.
BENCH_MODULES: Final = (
    "services.router.bench",
    "services.router.bench_brokers",
    "services.gateway.bench",
    "services.gateway.testserver",
    "services.indicators.bench",
    "services.cli.bench",
)

ALLOWED: Final[dict[str, frozenset[str]]] = {
    "contracts": frozenset(),
    "policy": frozenset({"contracts"}),
    "runtime": KERNELS,
    **dict.fromkeys(SERVICES, BELOW_SERVICES),
    "hub": BELOW_SERVICES | SERVICES,
    "sim": KERNELS,
    "kafkalocal": frozenset({"contracts", "runtime"}),
    "demo": PRODUCT | {"sim"},
    "fuzz": PRODUCT | {"sim"},
    "bench": PRODUCT | {"sim", "kafkalocal"},
    "cli": PRODUCT | TOOLING,
    "__main__": frozenset({"cli"}),
}


def tooling_paths() -> list[str]:
    """Every tooling folder and module, as paths from the repository root."""
    folders = [f"services/{package}/" for package in TOOLING_PACKAGES]
    return folders + [module.replace(".", "/") + ".py" for module in BENCH_MODULES]


@dataclass(frozen=True, slots=True)
class Edge:
    """One import of ours: where it is written and what it names."""

    module: str
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    """``services/router/app.py`` -> ``services.router.app``."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def component(module: str) -> str:
    """The layer component a module of ours belongs to."""
    if any(module == m or module.startswith(f"{m}.") for m in BENCH_MODULES):
        return "bench"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "services"


def imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The absolute module names one import statement names."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        # `from services.x import y` may name a module y: count the deeper name.
        yield from (f"{source}.{alias.name}" for alias in node.names)


def edges() -> Iterator[Edge]:
    """Every import of a ``services`` module, in every module of ours."""
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            for name in imported(node, module, path.name == "__init__.py"):
                if name.startswith("services."):
                    yield Edge(module, getattr(node, "lineno", 0), name)


def target_component(name: str) -> str:
    """The component of an imported name (a module, or an attribute of one)."""
    candidate = name
    while candidate.count(".") > 1:
        if _exists(candidate):
            break
        candidate = candidate.rsplit(".", 1)[0]
    return component(candidate)


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    base = ROOT / relative
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def violations() -> list[str]:
    """Every edge the table does not allow, and every component it does not name."""
    found = []
    for edge in edges():
        source, target = component(edge.module), target_component(edge.target)
        if source == target:
            continue
        allowed = ALLOWED.get(source)
        if allowed is None:
            found.append(f"{edge}: {source!r} is not in the layer table")
        elif target not in allowed:
            found.append(f"{edge}: {source} may not import {target}")
    return found


def test_every_import_of_ours_follows_the_layer_table() -> None:
    assert violations() == []


def test_product_code_never_imports_tooling() -> None:
    leaks = [
        str(edge)
        for edge in edges()
        if component(edge.module) in PRODUCT and target_component(edge.target) in TOOLING
    ]
    assert leaks == []


def test_no_module_of_ours_is_loaded_by_name_at_run_time() -> None:
    dynamic = [
        f"{module_name(path)} uses importlib"
        for path in sorted(ROOT.rglob("*.py"))
        if any(
            isinstance(node, ast.Import | ast.ImportFrom)
            and any(
                (alias.name if isinstance(node, ast.Import) else node.module or "").split(
                    "."
                )[0]
                == "importlib"
                for alias in node.names
            )
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    assert dynamic == []


def test_the_layer_check_sees_an_import_that_breaks_the_rule() -> None:
    # A kernel that imports runtime is the kind of edge the table must catch.
    assert component("services.contracts.cli") == "contracts"
    assert "runtime" not in ALLOWED["contracts"]
    assert target_component("services.runtime.settings.HubSettings") == "runtime"
    assert component("services.router.bench") == "bench"
    assert component("services.router.app") == "router"
