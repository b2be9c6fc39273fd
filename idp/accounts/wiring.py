"""Build the registration and preferences services for the current request (views call these)."""

from __future__ import annotations

from pathlib import Path

from flask import current_app, url_for

from idp.accounts.district import DistrictOptions, DistrictOptionsService
from idp.accounts.lockout import LockoutKeys, MemoryLockoutStore
from idp.accounts.models import Account, AccountStatus
from idp.accounts.password_policy import PasswordPolicyService
from idp.accounts.preferences import PreferencesService
from idp.accounts.recovery import RecoveryService
from idp.accounts.registration import RegistrationService
from idp.accounts.verification import EmailVerification
from idp.extensions import db
from idp.mail.compose import TemplateComposer
from idp.mail.delivery import FileTransport, deliver_due, transport_for
from idp.mail.notifications import Notifier
from idp.mail.outbox import Outbox
from idp.policy import RecoveryPolicy
from idp.runtime import runtime
from idp.students.access import AccessPolicy, StudentAccess

_FALLBACK_STORE = "idp.access_store"


def district_options() -> DistrictOptions:
    rt = runtime()
    service = DistrictOptionsService(
        db.session, defaults=DistrictOptions.from_settings(rt.settings), clock=rt.clock
    )
    return service.current()


def password_policies() -> PasswordPolicyService:
    rt = runtime()
    return PasswordPolicyService(db.session, hasher=rt.hasher, clock=rt.clock)


def student_access() -> StudentAccess:
    rt = runtime()
    if rt.lockout is not None:
        store, keys = rt.lockout.store, rt.lockout.keys
    else:  # an app built without init_redis: this process's memory
        store = current_app.extensions.setdefault(_FALLBACK_STORE, MemoryLockoutStore())
        keys = LockoutKeys.derive(rt.settings.redis_key_prefix, current_app.config["SECRET_KEY"])
    return StudentAccess(
        db.session,
        hasher=rt.hasher,
        store=store,
        policy=AccessPolicy.from_settings(rt.settings),
        keys=keys,
    )


def outbox() -> Outbox:
    return Outbox(db.session, clock=runtime().clock)


def notifier() -> Notifier:
    return Notifier(db.session, outbox=outbox(), composer=TemplateComposer())


def email_verification() -> EmailVerification:
    rt = runtime()
    return EmailVerification(
        db.session,
        secret_key=current_app.config["SECRET_KEY"],
        clock=rt.clock,
        outbox=outbox(),
        composer=TemplateComposer(),
        link=lambda token: rt.settings.issuer + url_for("registration.verify", token=token),
    )


def registration(options: DistrictOptions | None = None) -> RegistrationService:
    rt = runtime()
    return RegistrationService(
        db.session,
        accounts=rt.accounts(),
        guardianship=rt.guardianship(),
        access=student_access(),
        policies=password_policies(),
        verification=email_verification(),
        options=options or district_options(),
    )


def preferences(options: DistrictOptions | None = None) -> PreferencesService:
    rt = runtime()
    options = options or district_options()
    return PreferencesService(
        db.session,
        accounts=rt.accounts(),
        policies=password_policies(),
        registration=registration(options),
        guardianship=rt.guardianship(),
        verification=email_verification(),
        notifier=notifier(),
        options=options,
    )


def recovery() -> RecoveryService:
    rt = runtime()
    issuer = rt.settings.issuer.rstrip("/")
    return RecoveryService(
        db.session,
        clock=rt.clock,
        policy=RecoveryPolicy.from_settings(rt.settings),
        accounts=rt.accounts(),
        policies=password_policies(),
        sessions=rt.sessions(),
        families=rt.families(),
        notifier=notifier(),
        outbox=outbox(),
        link=lambda token: f"{issuer}/reset/{token}",
        lockout=rt.lockout,
    )


def deliver_mail_now() -> None:
    """Write due mail at once when it goes to files (development); SMTP is the worker's job."""
    rt = runtime()
    transport = transport_for(rt.settings.smtp_url, Path(current_app.instance_path))
    if isinstance(transport, FileTransport):
        deliver_due(db.session, transport, sender=rt.settings.mail_from, clock=rt.clock, limit=10)


def signin_needs_verification(account: Account) -> bool:
    """Return whether the district keeps this account out until its address is verified."""
    return account.status is AccountStatus.PENDING and district_options().require_email_verification
