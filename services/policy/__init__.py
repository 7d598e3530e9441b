"""The access policy: load and validate, decide, project, re-key (pure, no I/O).

``load_policy`` reads ``deploy/policy/`` (the only I/O besides `keys`, which may
create a development hub key).
"""

from services.policy.errors import ConditionError, KeyMaterialError, PolicyError
from services.policy.loader import load_policy
from services.policy.model import AggregateGrant, Decision, Institution, Rule
from services.policy.policy import Policy
from services.policy.projection import REKEYED_VIEWS, VIEWS, Projection, View
from services.policy.subject import SubjectKeys

__all__ = [
    "REKEYED_VIEWS",
    "VIEWS",
    "AggregateGrant",
    "ConditionError",
    "Decision",
    "Institution",
    "KeyMaterialError",
    "Policy",
    "PolicyError",
    "Projection",
    "Rule",
    "SubjectKeys",
    "View",
    "load_policy",
]
