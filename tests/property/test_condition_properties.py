"""Compiled conditions agree with jmespath's own interpreter on every shipped rule."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.policy import Policy, load_policy
from services.policy.compiled import compile_ast
from services.runtime.settings import REPO_ROOT
from tests.strategies import datums

# Expressions beyond the shipped ones, for the corners of JMESPath's semantics.
CORNERS = (
    "!`0`",
    "!`[]`",
    "`0` == `false`",
    "`1` == `true`",
    "`2` > `1` && 'b' > 'a'",
    "`true` < `1`",
    "`null` || `0`",
    "`[]` && `1`",
    "length(`[1, 2]`) >= `2`",
    'contains(`["A", "B"]`, \'B\')',
    "contains(a, 'a')",
    "contains(a, b)",
    "length(a)",
    "length(a[?b])",
    "a == 'a'",
    "a != 'ab'",
    "a.b == ''",
    "a",
    "a == `false`",
    "a.b",
    "a.b.c",
    "a[0]",
    "a[?b == `1`] | [0]",
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab", max_size=2),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


def _outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return ("value", fn(value))
    except Exception as e:
        return ("error", type(e).__name__)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_shipped_condition_compiles_to_what_jmespath_evaluates(
    policy: Policy, catalog: Catalog, event_type: str
) -> None:
    texts = sorted(
        {
            r.condition.text
            for r in policy.rules
            if r.event_type == event_type and r.condition is not None
        }
    )
    assert texts, f"no conditions on {event_type}"
    pairs = [
        (jmespath.compile(t), compile_ast(jmespath.compile(t).parsed)) for t in texts
    ]
    entry = catalog.get(event_type)

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(datums(entry.schema))
    def check(datum: dict[str, Any]) -> None:
        for parsed, compiled in pairs:
            assert _outcome(compiled, datum) == _outcome(parsed.search, datum), (
                parsed.expression
            )

    check()


@pytest.mark.parametrize("text", CORNERS)
@given(value=JSON)
def test_corner_cases_compile_to_what_jmespath_evaluates(text: str, value: Any) -> None:
    parsed = jmespath.compile(text)
    assert _outcome(compile_ast(parsed.parsed), value) == _outcome(parsed.search, value)
