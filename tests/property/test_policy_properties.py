"""Properties of the real policy over generated records of all four event types.

- a delivery holds only fields its view allows, plus the rule's declared grants,
  minus its removals (checked against an oracle computed here from the schema tags);
- DIRECT_IDENTIFIER and HIGHLY_SENSITIVE fields never reach PSEUDO or PSEUDO_S
  views unless the rule grants them by name;
- every delivery encodes with its projected schema and decodes by fingerprint;
- a recipient gets at most one delivery per record;
- re-keyed subject keys differ between recipients and are stable per recipient.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.contracts.schema_json import PRIMITIVES, full_name
from services.policy import Policy, Rule, SubjectKeys, load_policy
from services.policy.loader import tree_of
from services.runtime.settings import REPO_ROOT
from tests.strategies import datums

VIEW_TAGS = {
    "FULL": {
        "INTERNAL",
        "QUASI_IDENTIFIER",
        "DIRECT_IDENTIFIER",
        "SENSITIVE",
        "HIGHLY_SENSITIVE",
    },
    "IDENT": {"INTERNAL", "QUASI_IDENTIFIER", "DIRECT_IDENTIFIER"},
    "PSEUDO_S": {"INTERNAL", "QUASI_IDENTIFIER", "SENSITIVE"},
    "PSEUDO": {"INTERNAL", "QUASI_IDENTIFIER"},
}
NEVER_PSEUDO = {"DIRECT_IDENTIFIER", "HIGHLY_SENSITIVE"}
HUB_KEY = bytes(range(32, 64))
WITHDRAWN = datetime(2026, 11, 3, tzinfo=UTC)


# Non-empty numbers, so that most generated identities yield a subject key.
NUMBERS = st.text("0123456789ABCDEF-", min_size=2, max_size=10).filter(
    lambda t: t.strip("-")
)
DOCUMENT_NUMBERS = {
    "return_arrival": "payload.person_identity.documents.document_number",
    "border_crossing": "payload.traveller_identity.documents.document_number",
    "displacement_registration": "payload.members.identity.documents.document_number",
    "referral": "payload.subject_identity.documents.document_number",
}


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


def _tags(schema: Any) -> dict[str, tuple[str, ...]]:
    """Path -> the sensitivity tags of the path and each of its ancestors."""
    named: dict[str, Any] = {}
    found: dict[str, tuple[str, ...]] = {}

    def resolve(t: Any, ns: str | None) -> tuple[Any, str | None]:
        while True:
            if isinstance(t, str) and t not in PRIMITIVES:
                t = named[full_name(t, ns)]
            elif isinstance(t, list):
                t = next(b for b in t if b != "null")
            elif isinstance(t, dict) and t["type"] in ("array", "map"):
                t = t["items"] if t["type"] == "array" else t["values"]
            else:
                break
        if isinstance(t, dict) and t.get("type") in ("record", "enum"):
            name = full_name(t["name"], t.get("namespace", ns))
            named.setdefault(name, t)
            return t, name.rpartition(".")[0] or None
        return t, ns

    def walk(record: Any, ns: str | None, prefix: str, chain: tuple[str, ...]) -> None:
        for f in record["fields"]:
            path = f"{prefix}{f['name']}"
            tags = (*chain, f["sensitivity"])
            found[path] = tags
            inner, inner_ns = resolve(f["type"], ns)
            if isinstance(inner, dict) and inner.get("type") == "record":
                walk(inner, inner_ns, path + ".", tags)

    root, ns = resolve(schema, None)
    walk(root, ns, "", ())
    return found


def _allowed(rule: Rule, tags: Mapping[str, tuple[str, ...]]) -> set[str]:
    allowed_tags = VIEW_TAGS[rule.view]

    def by_view(path: str) -> bool:
        if rule.view == "PSEUDO" and path.rpartition(".")[2] in (
            "age_years",
            "district_code",
        ):
            return False
        return set(tags[path]) <= allowed_tags

    def under(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r + ".") for r in roots)

    def above(path: str) -> bool:
        return any(g.startswith(path + ".") for g in rule.grants)

    return {
        p
        for p in tags
        if (by_view(p) or under(p, rule.grants) or above(p))
        and not under(p, rule.removes)
    }


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            path = f"{prefix}{key}"
            yield path
            yield from _paths(inner, path + ".")
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item, prefix)


def _overrides(policy: Policy, catalog: Catalog) -> dict[str, st.SearchStrategy[Any]]:
    """Steer generated records towards what the rules look at (members, consent)."""
    members = st.sampled_from([*sorted(policy.institutions), "mun_0623", "Ana"])
    purposes = tree_of(catalog.get("referral")).get("envelope.purposes")
    assert purposes is not None
    assert purposes.shape.item is not None
    consent = st.fixed_dictionaries(
        {
            "obtained": st.sampled_from([True, True, True, False]),
            "method": st.just("WRITTEN"),
            "scopes": st.lists(
                st.sampled_from(purposes.shape.item.symbols), max_size=6, unique=True
            ),
            "disclosure_to_other_institutions": st.booleans(),
            "given_at": st.none(),
            "withdrawn_at": st.sampled_from([None, None, None, WITHDRAWN]),
        }
    )
    return {
        "envelope.source_institution_id": members,
        "payload.receiving_institution_id": members,
        "payload.referring_institution_id": members,
        "payload.consent": consent,
    }


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_deliveries_hold_only_what_their_rule_grants(
    policy: Policy, catalog: Catalog, event_type: str
) -> None:
    entry = catalog.get(event_type)
    tags = _tags(entry.schema)
    rules = {r.id: r for r in policy.rules if r.event_type == event_type}
    allowed = {rule_id: _allowed(rule, tags) for rule_id, rule in rules.items()}
    keys = SubjectKeys(HUB_KEY)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(datums(entry.schema, _overrides(policy, catalog)))
    def check(datum: dict[str, Any]) -> None:
        key, _ = keys.subject_key(event_type, datum)
        decisions = policy.decide(event_type, datum)
        delivered = [d for d in decisions if d.delivered]
        assert len({d.recipient for d in delivered}) == len(delivered)
        for decision in delivered:
            rule = rules[decision.rule_id]
            shown = (
                key
                if not decision.rekeyed or key is None
                else keys.rekey(decision.recipient, key)
            )
            out = decision.projection.apply(
                datum, shown, partial(keys.recipient_id, decision.recipient)
            )
            present = set(_paths(out))
            assert present <= allowed[rule.id], (rule.id, present - allowed[rule.id])
            if decision.rekeyed:
                exposed = {p for p in present if set(tags[p]) & NEVER_PSEUDO}
                # a granted field, or a record that only carries one (its container)
                granted = {
                    p
                    for p in exposed
                    for g in rule.grants
                    if p == g or p.startswith(g + ".") or g.startswith(p + ".")
                }
                assert exposed == granted, (rule.id, exposed - granted)
            data = codec.encode(decision.projection.entry, out)
            writer, back = codec.decode(catalog, data)
            assert writer.fingerprint == decision.projection.entry.fingerprint
            assert set(_paths(back)) == present

    check()


def test_the_hubs_overdue_notices_have_no_subject_at_all(catalog: Catalog) -> None:
    assert set(EVENT_TYPES) - set(DOCUMENT_NUMBERS) == {"referral_overdue"}
    entry = catalog.get("referral_overdue")
    keys = SubjectKeys(HUB_KEY)

    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(datums(entry.schema, {}))
    def check(datum: dict[str, Any]) -> None:
        assert keys.subject_key("referral_overdue", datum) == (None, "NONE")

    check()


@pytest.mark.parametrize("event_type", sorted(DOCUMENT_NUMBERS))
def test_re_keyed_subject_keys_differ_between_recipients_and_are_stable(
    policy: Policy, catalog: Catalog, event_type: str
) -> None:
    entry = catalog.get(event_type)
    keys = SubjectKeys(HUB_KEY)
    again = SubjectKeys(HUB_KEY)
    recipients = sorted(policy.institutions)

    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(datums(entry.schema, {DOCUMENT_NUMBERS[event_type]: NUMBERS}))
    def check(datum: dict[str, Any]) -> None:
        key, basis = keys.subject_key(event_type, datum)
        assert again.subject_key(event_type, datum) == (key, basis)
        if key is None:
            assert basis == "NONE"
            return
        rekeyed = [keys.rekey(r, key) for r in recipients]
        assert len(set(rekeyed)) == len(recipients)
        assert key not in rekeyed
        assert rekeyed == [again.rekey(r, key) for r in recipients]

    check()
