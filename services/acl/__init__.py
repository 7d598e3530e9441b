"""Kafka ACLs and topics for production, derived from the access policy.

``plan(policy, services)`` lists the bindings (pure); ``formats`` prints them as
lines or as ``kafka-acls.sh`` commands; ``cli`` is ``puente acl``.
"""

from services.acl.plan import Binding, ServicePrincipals, permits, plan

__all__ = ["Binding", "ServicePrincipals", "permits", "plan"]
