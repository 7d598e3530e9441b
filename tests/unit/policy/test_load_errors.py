"""A broken policy fails to load with a message naming the file, rule and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.contracts.catalog import Catalog
from services.policy import PolicyError, load_policy
from services.runtime.settings import REPO_ROOT

SOURCE = REPO_ROOT / "deploy" / "policy"

GOOD_RULE = """
[[rule]]
id = "probe"
recipient = "minsal"
view = "PSEUDO"
purpose = "HEALTH_CARE"
legal_basis = "LEGAL_MANDATE"
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(SOURCE, target)
    return target


def _add_rule(policy_dir: Path, text: str, event_type: str = "return_arrival") -> None:
    path = policy_dir / "rules" / f"{event_type}.toml"
    path.write_text(path.read_text() + "\n" + text)


def _error(policy_dir: Path, catalog: Catalog) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_dir, catalog)
    return str(caught.value)


def _rule(**fields: str) -> str:
    lines = ["[[rule]]"]
    base = {
        "id": '"probe"',
        "recipient": '"minsal"',
        "view": '"PSEUDO"',
        "purpose": '"HEALTH_CARE"',
        "legal_basis": '"LEGAL_MANDATE"',
    }
    base.update(fields)
    lines += [f"{k} = {v}" for k, v in base.items() if v != "-"]
    return "\n".join(lines) + "\n"


def test_the_repository_policy_loads(catalog: Catalog) -> None:
    assert load_policy(SOURCE, catalog).rules


def test_a_well_formed_extra_rule_loads(policy_dir: Path, catalog: Catalog) -> None:
    _add_rule(policy_dir, GOOD_RULE)
    assert any(r.id == "probe" for r in load_policy(policy_dir, catalog).rules)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"recipient": '"conna"'}, "rule 'probe': unknown institution 'conna'"),
        ({"purpose": "-"}, "rule 'probe' has no purpose"),
        ({"legal_basis": "-"}, "rule 'probe' has no legal_basis"),
        ({"purpose": '"HEALTH"'}, "rule 'probe': purpose 'HEALTH' is not one of"),
        ({"purpose": '"OTHER"'}, "rule 'probe': purpose 'OTHER' is not one of"),
        (
            {"legal_basis": '"UNKNOWN"'},
            "rule 'probe': legal_basis 'UNKNOWN' is not one of",
        ),
        ({"view": '"ANON"'}, "rule 'probe': view 'ANON' is not one of FULL, IDENT"),
        (
            {"consent_scope": '["HEALTH_CARE"]'},
            "rule 'probe': unknown key 'consent_scope'",
        ),
        (
            {"grant": '["payload.person_identity.telephone"]'},
            "rule 'probe': payload.person_identity.telephone is not a field of "
            "return_arrival v1",
        ),
        (
            {"remove": '["payload.destinaton"]'},
            "rule 'probe': payload.destinaton is not a field of return_arrival v1",
        ),
        (
            {"condition": "'payload.person_profile.is_minr'"},
            "rule 'probe': payload.person_profile.is_minr is not a field",
        ),
        (
            {"condition": "'payload.person_profile.sex == `FEMALE'"},
            "rule 'probe': condition 'payload.person_profile.sex == `FEMALE' "
            "does not parse",
        ),
        (
            {"condition": "\"payload.person_profile.sex == 'FEMININE'\""},
            "payload.person_profile.sex is never 'FEMININE'; its symbols are FEMALE",
        ),
        (
            {"condition": "\"envelope.source_institution_id == 'dgmee'\""},
            "compared with unknown institution 'dgmee'",
        ),
        (
            {"condition": "'envelope.occurred_at'"},
            "envelope.occurred_at is a timestamp-millis, which conditions cannot compare",
        ),
        ({"condition": "'payload.has_valid_dui == null'"}, "write `null` in backticks"),
        ({"condition": "'eval(payload)'"}, "unknown function eval()"),
        (
            {"condition": "'!payload.medical_attention_required'"},
            "`!a.b` reads `(!a).b`, which is always null; write `!(a.b)`",
        ),
        ({"legal_basis": '"CONSENT"'}, "legal_basis CONSENT needs consent_scopes"),
        ({"consent_scopes": '["HEALTH"]'}, "consent scope 'HEALTH' is not one of"),
        ({"recipient": '"fgr"'}, "rule 'probe': fgr gets no stream"),
        ({"recipient": "-"}, "name exactly one of recipient or recipient_field"),
        (
            {"recipient_field": '"payload.receiving_institution_id"'},
            "name exactly one of recipient or recipient_field",
        ),
        (
            {"grant": '["payload.protection_flags"]'},
            "grant payload.protection_flags would disclose payload.protection_flags "
            "(HIGHLY_SENSITIVE) in view PSEUDO",
        ),
        (
            {"grant": '["payload.person_identity.phone"]'},
            "adds direct identifier payload.person_identity.phone to pseudonymous "
            "view PSEUDO; that needs the person's consent",
        ),
        (
            {"view": '"FULL"', "grant": '["payload.arrival_id"]'},
            "a FULL view already holds every field",
        ),
        ({"id": '"Bad Id"'}, "rule 'Bad Id': id: String should match pattern"),
    ],
)
def test_a_broken_rule_is_named_with_what_is_wrong(
    policy_dir: Path, catalog: Catalog, fields: dict[str, str], expected: str
) -> None:
    _add_rule(policy_dir, _rule(**fields))
    message = _error(policy_dir, catalog)
    assert "rules/return_arrival.toml" in message
    assert expected in message


def test_a_recipient_field_must_exist_and_hold_a_string(
    policy_dir: Path, catalog: Catalog
) -> None:
    _add_rule(
        policy_dir,
        _rule(recipient="-", recipient_field='"payload.receiver"'),
        "referral",
    )
    assert "recipient_field payload.receiver is not a field of referral v1" in _error(
        policy_dir, catalog
    )


def test_a_recipient_field_rule_may_reach_a_no_stream_member_only_with_strict_consent(
    policy_dir: Path, catalog: Catalog
) -> None:
    _add_rule(
        policy_dir,
        _rule(
            recipient="-",
            recipient_field='"payload.receiving_institution_id"',
            recipients='["pnc"]',
            view='"FULL"',
        ),
        "referral",
    )
    assert "pnc gets no stream; a rule reaching it must require consent" in _error(
        policy_dir, catalog
    )


def test_consent_cannot_be_required_of_an_event_without_a_consent_record(
    policy_dir: Path, catalog: Catalog
) -> None:
    _add_rule(policy_dir, _rule(consent_scopes='["HEALTH_CARE"]'), "border_crossing")
    assert "border_crossing v1 has no payload.consent" in _error(policy_dir, catalog)


def test_a_consent_override_needs_the_override_fields(
    policy_dir: Path, catalog: Catalog
) -> None:
    _add_rule(
        policy_dir, _rule(consent_scopes='["HEALTH_CARE"]', consent_override="true")
    )
    assert "return_arrival v1 has no payload.consent_overridden" in _error(
        policy_dir, catalog
    )


def test_a_duplicate_rule_id_names_both_files(policy_dir: Path, catalog: Catalog) -> None:
    _add_rule(policy_dir, _rule(id='"dgme-ra-owner"'), "border_crossing")
    message = _error(policy_dir, catalog)
    assert "rule id 'dgme-ra-owner' is already used in" in message


def test_a_rule_file_for_an_unknown_event_type_is_refused(
    policy_dir: Path, catalog: Catalog
) -> None:
    (policy_dir / "rules" / "retrun_arrival.toml").write_text(GOOD_RULE)
    assert "rules/retrun_arrival.toml: unknown event type 'retrun_arrival'" in _error(
        policy_dir, catalog
    )


def test_invalid_toml_is_reported_with_its_file(
    policy_dir: Path, catalog: Catalog
) -> None:
    _add_rule(policy_dir, "[[rule]\nid = ")
    assert "rules/return_arrival.toml: not valid TOML" in _error(policy_dir, catalog)


def test_an_institution_with_a_bad_id_or_unknown_group_is_refused(
    policy_dir: Path, catalog: Catalog
) -> None:
    path = policy_dir / "institutions.toml"
    original = path.read_text()
    path.write_text(original + '\n[institutions.MINSAL2]\nname = "x"\n')
    assert "institution 'MINSAL2'" in _error(policy_dir, catalog)
    path.write_text(
        original + '\n[institutions.mun_0623]\nname = "x"\nworking_groups = ["sports"]\n'
    )
    assert "institution 'mun_0623': unknown working group 'sports'" in _error(
        policy_dir, catalog
    )
    path.write_text(
        original + '\n[institutions.mun_0623]\nname = "x"\npublishes = ["arrival"]\n'
    )
    assert "publishes unknown event type 'arrival'" in _error(policy_dir, catalog)
    path.write_text(original + '\n[institutions.mun_0623]\nname = "x"\nstreem = false\n')
    assert "institution 'mun_0623': unknown key 'streem'" in _error(policy_dir, catalog)
    path.write_text(original + "\n[institutions.mun_0623]\nworking_groups = []\n")
    assert "institution 'mun_0623' has no name" in _error(policy_dir, catalog)


def test_an_aggregate_grant_is_checked_like_a_rule(
    policy_dir: Path, catalog: Catalog
) -> None:
    path = policy_dir / "aggregates.toml"
    original = path.read_text()
    path.write_text(
        original + '\n[[aggregate]]\nrecipient = "marn"\n'
        'event_types = ["displacement_registration"]\n'
        'purpose = "POLICY_COORDINATION"\nlegal_basis = "LEGAL_MANDATE"\n'
        'by = ["payload.hazard"]\n'
    )
    assert "payload.hazard is not a field of displacement_registration v1" in _error(
        policy_dir, catalog
    )


def test_a_missing_institutions_file_or_folder_is_reported(
    policy_dir: Path, catalog: Catalog, tmp_path: Path
) -> None:
    (policy_dir / "institutions.toml").unlink()
    assert "institutions.toml: missing from the policy folder" in _error(
        policy_dir, catalog
    )
    assert "does not exist" in _error(tmp_path / "nowhere", catalog)


def test_a_field_path_error_says_which_fields_exist_there(
    policy_dir: Path, catalog: Catalog
) -> None:
    _add_rule(policy_dir, _rule(remove='["payload.person_profile.age"]'))
    assert "payload.person_profile has: sex, age_group, age_years, is_minor" in _error(
        policy_dir, catalog
    )
