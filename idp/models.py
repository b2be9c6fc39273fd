"""Every model, imported in one place so that the metadata is complete."""

from idp.accounts.models import Account, OPSession
from idp.audit import AuditEvent
from idp.oauth.models import AuthorizationCode, AuthorizationRequest, Client, Consent
from idp.students.models import GuardianLink, School, Student

__all__ = [
    "Account",
    "AuditEvent",
    "AuthorizationCode",
    "AuthorizationRequest",
    "Client",
    "Consent",
    "GuardianLink",
    "OPSession",
    "School",
    "Student",
]
