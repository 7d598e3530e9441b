"""Natural-JSON builders of the four event types, for policy tests.

``record(catalog, event_type, {"payload.person_profile.is_minor": True})`` starts
from a complete, realistic (synthetic) record and sets the given dotted paths, then
converts it to the datum fastavro would decode.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for

ALL_PURPOSES = (
    "RECEPTION_ASSISTANCE",
    "CHILD_PROTECTION",
    "HEALTH_CARE",
    "VICTIM_ASSISTANCE",
    "EMPLOYMENT_REINTEGRATION",
    "EDUCATION_CONTINUITY",
    "LEGAL_AID",
    "IDENTITY_DOCUMENTATION",
    "HUMANITARIAN_SHELTER",
    "BORDER_MANAGEMENT",
    "OFFICIAL_STATISTICS",
    "POLICY_COORDINATION",
    "ACCESS_TO_JUSTICE",
    "INTERNATIONAL_PARTNER_ASSISTANCE",
)


_IDS = uuid.UUID("0b6a3f36-61b6-4a57-9f5e-8e1f4ff0e1a1")


def ids(value: str) -> str:
    """A stand-in for a recipient's own identifiers (re-keyed views need one)."""
    return str(uuid.uuid5(_IDS, value))


def envelope(event_type: str, source: str) -> dict[str, Any]:
    """A complete envelope as a source sends it (no subject key yet)."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "source_institution_id": source,
        "source_unit_id": f"{source}-unit",
        "source_system": "SNUIM",
        "source_record_id": "R-1",
        "occurred_at": "2026-11-02T14:05:07.123Z",
        "recorded_at": "2026-11-02T14:15:00Z",
        "published_at": "2026-11-02T14:15:01Z",
        "correlation_id": str(uuid.uuid4()),
        "legal_basis": "LEGAL_MANDATE",
        # Every purpose: rules are then limited only by what a test sets.
        "purposes": list(ALL_PURPOSES),
    }


def consent(
    *scopes: str, obtained: bool = True, withdrawn: bool = False
) -> dict[str, Any]:
    """A consent record with the given scopes."""
    return {
        "obtained": obtained,
        "method": "WRITTEN" if obtained else "NOT_OBTAINED",
        "scopes": list(scopes),
        "disclosure_to_other_institutions": obtained,
        "given_at": "2026-11-02T14:10:00Z" if obtained else None,
        "withdrawn_at": "2026-11-03T09:00:00Z" if withdrawn else None,
    }


def identity(document_type: str = "DUI", number: str = "01234567-8") -> dict[str, Any]:
    """A person's identity with one document."""
    return {
        "given_names": "Ana María",
        "family_names": "Pérez Gómez",
        "birth_date": "1992-03-04",
        "documents": [
            {
                "document_type": document_type,
                "document_number": number,
                "issuing_country": "SV",
                "verified_against_registry": True,
            }
        ],
        "phone": "+50370000000",
    }


def profile(*, minor: bool = False) -> dict[str, Any]:
    """Sex and age of a person."""
    return {
        "sex": "FEMALE",
        "age_group": "AGE_12_17" if minor else "AGE_30_59",
        "age_years": 15 if minor else 34,
        "is_minor": minor,
        "nationality": "SV",
    }


def location() -> dict[str, Any]:
    """A destination or origin in El Salvador."""
    return {
        "department_code": "SV-SS",
        "municipality_code": "0623",
        "district_code": "0614",
        "locality": "Colonia Centro",
    }


def _return_arrival() -> dict[str, Any]:
    return {
        "envelope": envelope("return_arrival", "dgme"),
        "payload": {
            "arrival_id": "A-1",
            "reception_point_id": "RC_GAMI_SS",
            "arrival_mode": "AIR",
            "conveyance": "FEDERAL_CHARTER_FLIGHT",
            "return_type": "REMOVAL_DEPORTATION",
            "returned_from_country": "US",
            "time_abroad": "YEARS_1_TO_5",
            "person_profile": profile(),
            "person_identity": identity(),
            "has_valid_dui": True,
            "accompaniment": "ADULT_ALONE",
            "destination": location(),
            "migration_reasons": ["ECONOMIC"],
            "needs_protection_followup": False,
            "protection_flags": [],
            "medical_attention_required": False,
            "immediate_services": ["FOOD", "TRANSPORT"],
            "employment_profile": {
                "occupation_isco08": "7115",
                "education_level": "UPPER_SECONDARY",
                "interested_in_job_placement": False,
            },
            "consent": consent(obtained=False),
        },
    }


def _border_crossing() -> dict[str, Any]:
    return {
        "envelope": envelope("border_crossing", "dgme"),
        "payload": {
            "crossing_id": "C-1",
            "border_point_id": "LB_LAS_CHINAMAS",
            "border_type": "LAND",
            "direction": "EXIT",
            "traveller_profile": profile(),
            "traveller_identity": identity("PASSPORT_SV", "A1234567"),
            "travel_document_type": "PASSPORT_SV",
            "mobility_regime": "CA4_FREE_MOBILITY",
            "counterpart_country": "GT",
            "declared_final_destination": "US",
            "declared_purpose": "FAMILY_VISIT",
            "transport": "BUS",
            "outcome": "EXIT_CLEARED",
            "refusal_reason": None,
            "minor_travel": None,
            "labour_mobility_programme": None,
        },
    }


def _displacement_registration() -> dict[str, Any]:
    return {
        "envelope": envelope("displacement_registration", "mjsp_dnavmf"),
        "payload": {
            "registration_id": "D-1",
            "regime": "VIOLENCE_DL539",
            "registering_unit_id": "dnavmf-olav-sm",
            "cause_primary": "THREAT_OR_EXTORTION_BY_CRIMINAL_GROUP",
            "causes_secondary": [],
            "hazard_type": None,
            "hazard_event_id": None,
            "displacement_date": "2026-10-30",
            "registration_unit": "HOUSEHOLD",
            "household_size": 2,
            "composition": [{"sex": "FEMALE", "age_group": "AGE_30_59", "count": 2}],
            "members": [
                {
                    "member_key": "m-1",
                    "relationship_to_head": "HEAD",
                    "profile": profile(),
                    "identity": identity(),
                    "protection_flags": ["FORCED_DISPLACEMENT_RISK"],
                }
            ],
            "origin": location(),
            "current_location": location(),
            "current_shelter_type": "PROTECTION_SAFE_HOUSE",
            "shelter_id": "safe-house-7",
            "housing_impact": "ABANDONED_UNDER_THREAT",
            "property_left_behind": True,
            "intention": "RELOCATION_IN_COUNTRY",
            "previous_displacements": 0,
            "reported_to_authorities": False,
            "registration_status": "ACTIVE",
            "consent": consent("VICTIM_ASSISTANCE"),
        },
    }


def _referral() -> dict[str, Any]:
    return {
        "envelope": envelope("referral", "dgme"),
        "payload": {
            "referral_id": str(uuid.uuid4()),
            "lifecycle_event": "CREATED",
            "status": "SENT",
            "previous_status": None,
            "referring_institution_id": "dgme",
            "referring_unit_id": "dgme-gami",
            "referring_worker_key": "w-1",
            "receiving_institution_id": "minsal",
            "receiving_unit_id": "ucsf-0614",
            "service_category": "HEALTH_MEDICAL",
            "service_group": "OTHER",
            "service_code": None,
            "urgency": "PRIORITY_72H",
            "origin_context": "RETURN_RECEPTION",
            "subject_profile": profile(),
            "subject_identity": identity(),
            "subject_contact": {
                "phone": "+50370000000",
                "preferred_channel": "SMS",
                "safe_to_contact": True,
            },
            "subject_location": location(),
            "protection_flags": [],
            "consent": consent("HEALTH_CARE"),
            "consent_overridden": False,
            "override_reason": None,
            "appointment_at": "2026-11-04T15:30:00Z",
            "response_due_at": "2026-11-05T14:05:00Z",
        },
    }


def _referral_overdue() -> dict[str, Any]:
    base = envelope("referral_overdue", "hub_referrals")
    return {
        # What the tracker writes: its v1 envelope knows the purposes of schema v1.
        "envelope": {
            **base,
            "source_unit_id": None,
            "source_record_id": None,
            "purposes": ["POLICY_COORDINATION", "CHILD_PROTECTION"],
        },
        "payload": {
            "referral_id": str(uuid.uuid4()),
            "deadline": "ACKNOWLEDGE",
            "due_at": "2026-11-03T14:05:07Z",
            "escalation_level": 1,
            "urgency": "IMMEDIATE_24H",
            "service_group": "HEALTH",
            "referring_institution_id": "dgme",
            "receiving_institution_id": "minsal",
            "supervising_institution_id": "rree_vmdmh",
        },
    }


BASES = {
    "return_arrival": _return_arrival,
    "border_crossing": _border_crossing,
    "displacement_registration": _displacement_registration,
    "referral": _referral,
    "referral_overdue": _referral_overdue,
}


def natural(event_type: str, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The base natural-JSON record of ``event_type`` with ``changes`` applied."""
    value = copy.deepcopy(BASES[event_type]())
    for path, new in (changes or {}).items():
        *parents, last = path.split(".")
        target = value
        for name in parents:
            target = target[name]
        target[last] = copy.deepcopy(new)
    return value


def record(
    catalog: Catalog, event_type: str, changes: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The datum (as fastavro decodes it) of the base record with ``changes``."""
    datum: dict[str, Any] = codec_for(catalog.get(event_type)).to_datum(
        natural(event_type, changes)
    )
    return datum
