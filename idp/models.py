"""Every model, imported in one place so that the metadata is complete."""

from idp.accounts.models import Account, OPSession, SessionClient
from idp.accounts.policy_models import DistrictOption, PasswordHistory, PasswordPolicyRecord
from idp.accounts.recovery_models import RecoveryRequest, RecoveryToken
from idp.audit import AuditEvent
from idp.mail.models import OutboundEmail
from idp.oauth.models import (
    AuthorizationCode,
    AuthorizationRequest,
    Client,
    Consent,
    RefreshToken,
    RefreshTokenFamily,
)
from idp.students.models import GuardianLink, School, Student

__all__ = [
    "Account",
    "AuditEvent",
    "AuthorizationCode",
    "AuthorizationRequest",
    "Client",
    "Consent",
    "DistrictOption",
    "GuardianLink",
    "OPSession",
    "OutboundEmail",
    "PasswordHistory",
    "PasswordPolicyRecord",
    "RecoveryRequest",
    "RecoveryToken",
    "RefreshToken",
    "RefreshTokenFamily",
    "School",
    "SessionClient",
    "Student",
]
