"""What a request needs beyond the database session: settings, clock, hasher, keys.

Built once per app by ``create_app`` and kept in ``app.extensions``; views build the
domain services from it and ``db.session``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from idp.accounts.devices import DeviceCookies
from idp.accounts.lockout import Lockout
from idp.accounts.password_policy import PasswordPolicyService
from idp.accounts.passwords import PasswordHasher
from idp.accounts.service import AccountService
from idp.accounts.sessions import SessionService
from idp.clock import Clock
from idp.config import Settings
from idp.extensions import db
from idp.keyring import KeyRing
from idp.oauth.claims import ClaimsBuilder
from idp.oauth.families import TokenFamilyService
from idp.oauth.logout import BackchannelLogout
from idp.policy import SessionPolicy, TokenPolicy
from idp.students.guardianship import GuardianshipService

EXTENSION_KEY = "idp.runtime"


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    hasher: PasswordHasher
    session_policy: SessionPolicy
    token_policy: TokenPolicy
    keyring: KeyRing | None = None
    # Set by init_redis: the failed sign-in counters (Redis, or memory as the fallback).
    lockout: Lockout | None = None
    # Set by configure: the signed cookie of browsers that signed in before.
    devices: DeviceCookies | None = None

    def keys(self) -> KeyRing:
        if self.keyring is None:
            raise RuntimeError("the key ring is not initialised (init_oauth)")
        return self.keyring

    def accounts(self) -> AccountService:
        return AccountService(
            db.session,
            hasher=self.hasher,
            clock=self.clock,
            lockout=self.lockout,
            policies=PasswordPolicyService(db.session, hasher=self.hasher, clock=self.clock),
        )

    def sessions(self) -> SessionService:
        return SessionService(db.session, clock=self.clock, policy=self.session_policy)

    def guardianship(self) -> GuardianshipService:
        return GuardianshipService(db.session, hasher=self.hasher)

    def claims(self) -> ClaimsBuilder:
        return ClaimsBuilder(db.session, guardianship=self.guardianship())

    def families(self) -> TokenFamilyService:
        return TokenFamilyService(db.session, clock=self.clock, policy=self.token_policy)

    def backchannel(self) -> BackchannelLogout:
        return BackchannelLogout(
            db.session,
            keys=self.keys(),
            clock=self.clock,
            issuer=self.settings.issuer,
            policy=self.token_policy,
        )


def install_runtime(app: Flask, runtime_: Runtime) -> None:
    app.extensions[EXTENSION_KEY] = runtime_


def runtime() -> Runtime:
    """Return the current app's runtime."""
    value: Runtime = current_app.extensions[EXTENSION_KEY]
    return value
