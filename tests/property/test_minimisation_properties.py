"""Minimisation against a determined recipient, with the shipped policy (issue 13).

For random records of all four event types, routed by the real pipeline:

(a) no delivery, headers and Kafka key included, holds a value its view withholds,
    and its CloudEvents headers are those of the projected record;
(b) two recipients of one event, neither with an identifying view, share no
    identifier value (event, record and case ids, subject keys: anything UUID- or
    key-shaped, or any value of a linkable field of the original);
(c) no recipient-visible value is a function of a withheld field: changing withheld
    fields leaves every delivery made under the same rule byte-for-byte the same.

``PUENTE_PROPERTY_EXAMPLES`` sets the records per event type (default 60; the
nightly-size run uses 10,000).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.contracts import codec, headers, topics
from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.contracts.natural import format_timestamp
from services.policy import Policy, SubjectKeys, load_policy
from services.policy import projection as proj
from services.policy.loader import tree_of
from services.policy.tree import SchemaTree
from services.router.pipeline import Accepted, Inbound, Limits, Output, Pipeline
from services.runtime.settings import REPO_ROOT
from tests.samples import authored_referral
from tests.strategies import datums, routing
from tests.unit.policy.records import ALL_PURPOSES

HUB_KEY = bytes(range(96, 128))
NOW = datetime(2100, 1, 2, tzinfo=UTC)
OCCURRED = datetime(2026, 11, 1, 8, 30, 17, 123_000, tzinfo=UTC)
EXAMPLES = int(os.environ.get("PUENTE_PROPERTY_EXAMPLES", "60"))
IDENTIFYING = frozenset({"FULL", "IDENT"})
# UUIDs and hub or re-keyed subject keys: values made to be joined on.
JOINABLE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[kr]\d+:[a-z2-7]{20,}"
)
# Fields a kept value is derived from by design: the pseudonym comes from the
# documents (HMAC, not reversible) and the service group from the category.
DERIVED_FROM: Final = ("documents", "service_category")


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


@pytest.fixture(scope="module")
def pipeline(catalog: Catalog, policy: Policy) -> Pipeline:
    limits = Limits(max_event_bytes=1 << 20, future_skew=timedelta(days=1))
    return Pipeline(catalog, policy, SubjectKeys(HUB_KEY), limits)


def _overrides(
    policy: Policy, event_type: str, purposes: list[str]
) -> dict[str, st.SearchStrategy[Any]]:
    members = list(policy.institutions)
    return {
        **routing(policy.publish_rights, members, event_type, OCCURRED),
        # Mostly every purpose, so the rules' other checks get exercised too.
        "envelope.purposes": st.one_of(
            st.just(purposes),
            st.lists(st.sampled_from(purposes), max_size=6, unique=True),
        ),
        "payload.consent": st.fixed_dictionaries(
            {
                "obtained": st.sampled_from([True, True, True, False]),
                "method": st.just("WRITTEN"),
                "scopes": st.lists(st.sampled_from(purposes), unique=True),
                "disclosure_to_other_institutions": st.sampled_from([True] * 3 + [False]),
                "given_at": st.none(),
                "withdrawn_at": st.sampled_from([None, None, None, OCCURRED]),
            }
        ),
        # Health follow-up makes a second pseudonymous recipient of a return.
        "payload.medical_attention_required": st.booleans(),
    }


def _purposes(entry: Any) -> list[str]:
    """The purposes the record's schema can carry (the hub's own records: version 1)."""
    node = tree_of(entry).get("envelope.purposes")
    assert node is not None
    assert node.shape.item is not None
    return [p for p in ALL_PURPOSES if p in node.shape.item.symbols]


def _route(pipeline: Pipeline, catalog: Catalog, event_type: str, datum: Any) -> Any:
    """The accepted record and its outputs, or None when the router refuses it."""
    entry = catalog.get(event_type)
    if event_type == "referral":
        authored_referral(datum, _referral_publishers(pipeline))
    source = datum["envelope"]["source_institution_id"]
    value = codec.encode(entry, datum)
    inbound = Inbound(topics.inbound(source, event_type), 0, 1, None, value, 0)
    accepted = pipeline.inspect(inbound, NOW)
    if not isinstance(accepted, Accepted):
        return None
    return accepted, pipeline.deliver(accepted, NOW)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif value is not None and not isinstance(value, bool | int | float):
        yield str(value)  # UUIDs, dates, datetimes of a decoded record


def _visible(catalog: Catalog, output: Output) -> tuple[Any, set[str]]:
    """The decoded delivery and every string a recipient sees in it."""
    _, datum = codec.decode(catalog, output.value)
    seen = set(_strings(datum))
    seen.update(v.decode() for _, v in output.headers)
    if output.key is not None:
        seen.add(output.key.decode())
    return datum, seen


def _values_at(tree: SchemaTree, datum: Any, paths: Collection[str]) -> Iterator[str]:
    """Strings held at ``paths`` of a plain datum (arrays are transparent)."""
    for path in paths:
        node = tree.nodes[path]
        if (node.shape.kind, node.shape.primitive) != ("scalar", "string"):
            continue
        yield from _strings(_at(datum, path.split(".")))


def _at(value: Any, steps: list[str]) -> Any:
    if isinstance(value, list):
        return [_at(v, steps) for v in value]
    if not steps or not isinstance(value, Mapping):
        return value if not steps else None
    return _at(value.get(steps[0]), steps[1:])


def _deliveries(outputs: list[Output]) -> dict[str, Output]:
    return {str(o.recipient): o for o in outputs if o.kind == "delivery"}


def _decisions(policy: Policy, accepted: Accepted) -> dict[str, Any]:
    decided = policy.decide(accepted.event_type, accepted.datum, accepted.entry.version)
    return {d.recipient: d for d in decided if d.delivered}


def _each_routed(
    pipeline: Pipeline,
    policy: Policy,
    catalog: Catalog,
    event_type: str,
    check: Callable[[Accepted, list[Output]], None],
) -> None:
    """Run ``check`` on the outputs of every generated record the router accepts."""
    entry = catalog.get(event_type)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(datums(entry.schema, _overrides(policy, event_type, _purposes(entry))))
    def run(datum: dict[str, Any]) -> None:
        routed = _route(pipeline, catalog, event_type, datum)
        assume(routed is not None)
        check(*routed)

    run()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_no_delivery_holds_a_value_or_header_its_view_withholds(
    pipeline: Pipeline, policy: Policy, catalog: Catalog, event_type: str
) -> None:
    entry = catalog.get(event_type)
    tree = tree_of(entry)
    vocabulary = _vocabulary(policy, tree)

    def check(accepted: Accepted, outputs: list[Output]) -> None:
        decisions = _decisions(policy, accepted)
        for recipient, output in _deliveries(outputs).items():
            decision = decisions[recipient]
            rule = next(r for r in policy.rules if r.id == decision.rule_id)
            kept = proj.kept_paths(tree, rule.view, rule.grants, rule.removes, rule.only)
            withheld = set(tree.nodes) - kept
            body, seen = _visible(catalog, output)
            kept_values = set(_values_at(tree, accepted.datum, kept))
            secret = {
                v
                for v in _values_at(tree, accepted.datum, withheld)
                if len(v) >= 6 and v not in kept_values and v not in vocabulary
            }
            assert not (secret & seen), (rule.id, sorted(secret & seen))
            assert rule.id not in seen, rule.id
            sent = headers.parse(output.headers)
            envelope = body["envelope"]
            assert sent.id == str(envelope["event_id"])
            assert sent.source == envelope["source_institution_id"]
            assert sent.time == format_timestamp(envelope["occurred_at"])
            assert set(sent.extensions) == {
                headers.VIEW,
                headers.PURPOSE,
                headers.LEGAL_BASIS,
                headers.POLICY_VERSION,
            }

    _each_routed(pipeline, policy, catalog, event_type, check)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_pseudonymous_recipients_of_one_event_share_no_identifier(
    pipeline: Pipeline, policy: Policy, catalog: Catalog, event_type: str
) -> None:
    entry = catalog.get(event_type)
    tree = tree_of(entry)
    vocabulary = _vocabulary(policy, tree)
    linkable = {p for p, n in tree.nodes.items() if n.linkable}

    def check(accepted: Accepted, outputs: list[Output]) -> None:
        # Random short values may recur by chance in other fields; real ids do not.
        others = set(_values_at(tree, accepted.datum, set(tree.nodes) - linkable))
        original = {
            v
            for v in _values_at(tree, accepted.datum, linkable)
            if len(v) >= 6 and v not in others and v not in vocabulary
        }
        hub_key = accepted.datum["envelope"]["subject_key"]
        if hub_key is not None:
            original.add(hub_key)
        pseudonymous = [
            _visible(catalog, o)[1]
            for o in _deliveries(outputs).values()
            if o.view not in IDENTIFYING
        ]
        for i, first in enumerate(pseudonymous):
            assert not (first & original), sorted(first & original)
            for second in pseudonymous[i + 1 :]:
                shared = first & second
                joinable = {v for v in shared if JOINABLE.search(v)}
                assert not joinable, sorted(joinable)

    _each_routed(pipeline, policy, catalog, event_type, check)


def _vocabulary(policy: Policy, tree: SchemaTree) -> frozenset[str]:
    """Words a delivery may carry whatever the record says: enum symbols, views,
    institution ids, "masked". Generated text that happens to equal one of them
    (hypothesis draws from the code's own literals) reveals nothing.
    """
    words = {*proj.VIEWS, proj.MASKED_INSTITUTION, *policy.institutions}
    for node in tree.nodes.values():
        shape = node.shape.item if node.shape.kind == "array" else node.shape
        if shape is not None:
            words.update(shape.symbols)
    return frozenset(words)


def _perturbed(tree: SchemaTree, datum: Any, withheld: set[str]) -> Any:
    """``datum`` with every withheld top-level scalar changed to another value."""
    changed = {**datum, "payload": dict(datum["payload"])}
    changed["envelope"] = dict(datum["envelope"])
    for path in sorted(withheld):
        section, _, name = path.partition(".")
        if "." in name or section not in ("envelope", "payload"):
            continue
        if name in DERIVED_FROM or path in proj.INSTITUTION_FIELDS:
            continue
        node = tree.nodes[path]
        old = changed[section].get(name)
        new = _other(node.shape, old)
        if new is not _SAME:
            changed[section][name] = new
    return changed


_SAME: Final = object()


def _other(shape: Any, old: Any) -> Any:
    if old is None:
        return _SAME
    if shape.kind == "enum":
        return next((s for s in shape.symbols if s != old), _SAME)
    if shape.kind == "scalar" and shape.primitive == "boolean":
        return not old
    if shape.kind == "scalar" and shape.primitive == "string" and shape.logical is None:
        return old + "-changed"
    if (
        shape.kind == "scalar"
        and shape.primitive in ("int", "long")
        and not shape.logical
    ):
        return old + 1
    return _SAME


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_no_delivery_changes_when_only_withheld_fields_change(
    pipeline: Pipeline, policy: Policy, catalog: Catalog, event_type: str
) -> None:
    entry = catalog.get(event_type)
    tree = tree_of(entry)

    def check(accepted: Accepted, outputs: list[Output]) -> None:
        before = _deliveries(outputs)
        rules = {r.id: r for r in policy.rules}
        for recipient, decision in _decisions(policy, accepted).items():
            rule = rules[decision.rule_id]
            kept = proj.kept_paths(tree, rule.view, rule.grants, rule.removes, rule.only)
            again = _route(
                pipeline,
                catalog,
                event_type,
                _perturbed(tree, accepted.datum, set(tree.nodes) - kept),
            )
            if again is None:
                continue
            now = _decisions(policy, again[0]).get(recipient)
            if now is None or now.rule_id != rule.id:
                continue  # the rule's condition reads the field: nothing sent
            after = _deliveries(again[1])[recipient]
            assert after.value == before[recipient].value, rule.id
            assert after.headers == before[recipient].headers, rule.id
            assert after.key == before[recipient].key, rule.id

    _each_routed(pipeline, policy, catalog, event_type, check)


def _referral_publishers(pipeline: Pipeline) -> set[str]:
    rights = cast(Policy, pipeline.policy).publish_rights
    return {source for source, types in rights.items() if "referral" in types}
