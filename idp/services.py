"""The composition root: every collaborator built once per app, and the services built from them.

``create_app`` builds one ``Services`` from the settings and keeps it on the app; a view asks it
for the one service it calls (``services().accounts()``), the CLI and the worker likewise. Services
are cheap objects over the request's database session; the costly parts (the key ring, the
hasher, the counters, the mail templates) are made here once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from idp.accounts.administration import AccountAdministration
from idp.accounts.change_ticket import ChangeTickets
from idp.accounts.deletion import AccountDeletion
from idp.accounts.devices import DeviceCookies
from idp.accounts.district import DistrictOptions, DistrictOptionsService
from idp.accounts.hashing import BoundedPasswordHasher
from idp.accounts.legacy_import import LegacyAccounts
from idp.accounts.lockout import Lockout
from idp.accounts.own_data import OwnData
from idp.accounts.password_policy import PasswordPolicyService
from idp.accounts.preferences import PreferencesService
from idp.accounts.recovery import RecoveryService
from idp.accounts.registration import RegistrationService
from idp.accounts.service import AccountService
from idp.accounts.sessions import SessionService
from idp.accounts.signin import SignInService
from idp.accounts.verification import EmailVerification
from idp.admin.accounts import StaffAccounts
from idp.admin.api_clients import AdminClients
from idp.admin.audit_trail import AuditTrail
from idp.admin.district_settings import DistrictSettings
from idp.admin.emulation import Emulation
from idp.admin.reset_all import PasswordResets
from idp.admin.search import AccountSearch
from idp.admin.staff import StaffService
from idp.admin.staff_management import StaffManagement
from idp.admin.students import StudentProfiles
from idp.admin.totp import TotpCipher
from idp.clock import Clock
from idp.config import Settings
from idp.counters.connect import open_counters
from idp.db import DbSession
from idp.keys.keystore import KeyStore
from idp.keys.ring import KeyRing
from idp.keys.rotation import KeyRotation, KeyTimings, audited
from idp.keys.stores import open_key_store
from idp.mail.compose import TemplateComposer
from idp.mail.delivery import SMTPTimeouts, Transport, message_domain, transport_for
from idp.mail.notifications import Notifier
from idp.mail.outbox import Outbox
from idp.oauth.access import AccessTokens
from idp.oauth.claims import ClaimsBuilder
from idp.oauth.clients import ClientService
from idp.oauth.codes import AuthorizationCodes
from idp.oauth.consent import ConsentService
from idp.oauth.families import TokenFamilyService
from idp.oauth.id_tokens import IdTokens
from idp.oauth.logout import BackchannelLogout
from idp.oauth.pending import PendingRequests
from idp.oauth.portal_grants import PortalGrants
from idp.policy import (
    AccessPolicy,
    HashingPolicy,
    LockoutPolicy,
    RecoveryPolicy,
    SessionPolicy,
    TokenPolicy,
)
from idp.students.access import StudentAccess
from idp.students.credentials import AccessIssuer
from idp.students.guardianship import GuardianshipService
from idp.students.invitations import GuardianInvitations
from idp.students.letters import FamilyLetters, LetterSettings
from idp.students.roster.importer import RosterImport
from idp.students.schools import SchoolService
from idp.students.unlinking import GuardianUnlinking


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        session: DbSession,
        engine: Engine,
        clock: Clock,
        secret_key: str,
        instance_path: Path,
    ) -> None:
        self.settings = settings
        self.session = session
        self.clock = clock
        self.secret_key = secret_key
        self.issuer = settings.issuer
        self.session_policy = SessionPolicy.from_settings(settings)
        self.token_policy = TokenPolicy.from_settings(settings)
        self.lockout_policy = LockoutPolicy.from_settings(settings)
        self.hasher = BoundedPasswordHasher(HashingPolicy.from_settings(settings))
        # Redis's fallback counts in the database, on connections of its own from ``engine``.
        self.counters = open_counters(
            settings.redis_url,
            prefix=settings.redis_key_prefix,
            secret_key=secret_key,
            clock=clock,
            engine=engine,
            session=session,
        )
        # IDP_KEYS_STORE: the folder, or the database (reads on connections of its own from
        # ``engine``; a change in this session, so that its audit rows commit with it).
        self.engine = engine
        self.key_store = open_key_store(settings, engine=engine, change_session=lambda: self.session)
        self.keys = KeyRing(self.key_store, clock=clock, check_seconds=settings.keys_check_seconds)
        self.devices = DeviceCookies(secret_key, clock=clock, policy=self.lockout_policy)
        self.mail_transport: Transport = transport_for(
            settings.smtp_url, instance_path, SMTPTimeouts(float(settings.smtp_timeout_seconds))
        )
        self.composer = TemplateComposer(
            default_locale=settings.languages[0],
            timezone=settings.timezone,
            # Read when a message is composed: staff may rename the district at any time.
            district_name=lambda: self.district_options().current().name,
        )

    @property
    def lockout(self) -> Lockout:
        """The lockout over the counters, with the threshold and duration the district's options say."""
        return Lockout(self.counters.store, self.counters.keys, self._district_lockout_policy)

    def _district_lockout_policy(self) -> LockoutPolicy:
        options = self.district_options().current()
        return replace(
            self.lockout_policy,
            threshold=options.lockout_threshold,
            duration=timedelta(seconds=options.lockout_seconds),
        )

    # --- accounts --------------------------------------------------------------------------
    def accounts(self) -> AccountService:
        return AccountService(
            self.session,
            hasher=self.hasher,
            clock=self.clock,
            lockout=self.lockout,
            policies=self.password_policies(),
        )

    def signin(self) -> SignInService:
        return SignInService(
            self.session,
            accounts=self.accounts(),
            sessions=self.sessions(),
            options=self.district_options(),
            preferences=self.preferences,
            tell_portals=self.backchannel().tell,
        )

    def sessions(self) -> SessionService:
        return SessionService(self.session, clock=self.clock, policy=self.session_policy)

    def change_tickets(self) -> ChangeTickets:
        return ChangeTickets(self.session, secret_key=self.secret_key)

    def password_policies(self) -> PasswordPolicyService:
        return PasswordPolicyService(
            self.session,
            hasher=self.hasher,
            clock=self.clock,
            temporary_life=timedelta(seconds=self.settings.temporary_password_seconds),
        )

    def district_options(self) -> DistrictOptionsService:
        return DistrictOptionsService(
            self.session, defaults=DistrictOptions.from_settings(self.settings), clock=self.clock
        )

    def email_verification(self) -> EmailVerification:
        return EmailVerification(
            self.session,
            secret_key=self.secret_key,
            clock=self.clock,
            outbox=self.outbox(),
            composer=self.composer,
            link=lambda token: f"{self.issuer}/verify/{token}",
        )

    def registration(self, options: DistrictOptions | None = None) -> RegistrationService:
        return RegistrationService(
            self.session,
            accounts=self.accounts(),
            guardianship=self.guardianship(),
            access=self.student_access(),
            policies=self.password_policies(),
            verification=self.email_verification(),
            options=options or self.district_options().current(),
        )

    def preferences(self, options: DistrictOptions | None = None) -> PreferencesService:
        options = options or self.district_options().current()
        return PreferencesService(
            self.session,
            accounts=self.accounts(),
            policies=self.password_policies(),
            registration=self.registration(options),
            guardianship=self.guardianship(),
            verification=self.email_verification(),
            notifier=self.notifier(),
            options=options,
            sessions=self.sessions(),
            revoke_grants=self._revoke_grants,
            tell_portals=self.backchannel().tell,
        )

    def administration(self, *, actor: str) -> AccountAdministration:
        return AccountAdministration(
            self.session,
            clock=self.clock,
            sessions=self.sessions(),
            policies=self.password_policies(),
            revoke_grants=self._revoke_grants,
            tell_portals=self.backchannel().tell,
            district_name=self.district_options().current().name,
            actor=actor,
        )

    def account_deletion(self) -> AccountDeletion:
        """Deleting an account for good: staff's (the console) and the holder's (Account Preferences)."""
        return AccountDeletion(
            self.session,
            notifier=self.notifier(),
            sessions=self.sessions(),
            revoke_grants=self._revoke_grants,
            tell_portals=self.backchannel().tell,
            district_name=self.district_options().current().name,
        )

    def own_data(self) -> OwnData:
        """A parent's own data in Account Preferences: students, devices, the export, deletion."""
        return OwnData(
            self.session,
            clock=self.clock,
            session_policy=self.session_policy,
            accounts=self.accounts(),
            sessions=self.sessions(),
            unlinking=self.guardian_unlinking(),
            deletion=self.account_deletion(),
            revoke_session_grants=lambda account_id, sid, reason: self.families().revoke_for_session(
                account_id, sid, reason=reason
            ),
            tell_portals=self.backchannel().tell,
            portal_grants=PortalGrants(self.session),
            relationships=self.district_options().current().relationships,
        )

    def _revoke_grants(self, account_id: str, reason: str, keep_sid: str | None = None) -> int:
        return self.families().revoke_for_account(account_id, reason=reason, keep_sid=keep_sid)

    def legacy_accounts(self) -> LegacyAccounts:
        return LegacyAccounts(
            self.session,
            clock=self.clock,
            guardianship=self.guardianship(),
            relationships=self.district_options().current().relationships,
        )

    def recovery(self) -> RecoveryService:
        return RecoveryService(
            self.session,
            clock=self.clock,
            policy=RecoveryPolicy.from_settings(self.settings),
            accounts=self.accounts(),
            policies=self.password_policies(),
            sessions=self.sessions(),
            revoke_grants=self._revoke_grants,
            notifier=self.notifier(),
            outbox=self.outbox(),
            link=lambda token: f"{self.issuer}/reset/{token}",
            lockout=self.lockout,
        )

    # --- students --------------------------------------------------------------------------
    def guardianship(self) -> GuardianshipService:
        return GuardianshipService(
            self.session, hasher=self.hasher, clock=self.clock, single_use=self._single_use_access
        )

    def _single_use_access(self) -> bool:
        return self.district_options().current().single_use_access_passwords

    def student_access(self) -> StudentAccess:
        return StudentAccess(
            self.session,
            hasher=self.hasher,
            counters=self.counters.store,
            keys=self.counters.keys,
            policy=AccessPolicy.from_settings(self.settings),
            single_use=self._single_use_access,
        )

    def schools(self) -> SchoolService:
        return SchoolService(self.session, district_timezone=self.settings.timezone)

    def access_issuer(self) -> AccessIssuer:
        return AccessIssuer(self.session, hasher=self.hasher, clock=self.clock)

    def family_letters(self) -> FamilyLetters:
        options = self.district_options().current()
        return FamilyLetters(
            self.session,
            schools=self.schools(),
            issuer=self.access_issuer(),
            clock=self.clock,
            settings=LetterSettings(
                district_name=options.name,
                district_language=self.settings.languages[0],
                register_url=f"{self.issuer}/register",
                account_url=f"{self.issuer}/account/students",
                single_use=options.single_use_access_passwords,
            ),
        )

    # --- rosters and guardian invitations ----------------------------------------------------
    def guardian_unlinking(self) -> GuardianUnlinking:
        return GuardianUnlinking(
            self.session, notifier=self.notifier(), district_name=self.district_options().current().name
        )

    def roster_import(self) -> RosterImport:
        return RosterImport(self.session, clock=self.clock, unlinking=self.guardian_unlinking())

    def guardian_invitations(self) -> GuardianInvitations:
        return GuardianInvitations(
            self.session,
            clock=self.clock,
            life=timedelta(seconds=self.settings.invitation_seconds),
            outbox=self.outbox(),
            composer=self.composer,
            notifier=self.notifier(),
            guardianship=self.guardianship(),
            accounts=self.accounts(),
            policies=self.password_policies(),
            verification=self.email_verification(),
            link=lambda token: f"{self.issuer}/invitations/{token}",
            district_name=self.district_options().current().name,
            languages=self.settings.languages,
        )

    # --- OAuth and OpenID Connect ----------------------------------------------------------
    def clients(self) -> ClientService:
        return ClientService(self.session)

    def admin_clients(self) -> AdminClients:
        return AdminClients(
            self.session, clients=self.clients(), keys=self.keys, issuer=self.issuer, clock=self.clock
        )

    def pending_requests(self) -> PendingRequests:
        return PendingRequests(self.session, clock=self.clock, policy=self.token_policy)

    def consents(self) -> ConsentService:
        return ConsentService(self.session, clock=self.clock)

    def codes(self) -> AuthorizationCodes:
        return AuthorizationCodes(self.session, clock=self.clock, policy=self.token_policy)

    def families(self) -> TokenFamilyService:
        return TokenFamilyService(self.session, clock=self.clock, policy=self.token_policy)

    def claims(self) -> ClaimsBuilder:
        return ClaimsBuilder(self.session, guardianship=self.guardianship())

    def id_tokens(self) -> IdTokens:
        return IdTokens(
            keys=self.keys,
            claims=self.claims(),
            issuer=self.issuer,
            clock=self.clock,
            policy=self.token_policy,
        )

    def access_tokens(self) -> AccessTokens:
        return AccessTokens(
            self.session, keys=self.keys, issuer=self.issuer, clock=self.clock, families=self.families()
        )

    def backchannel(self) -> BackchannelLogout:
        return BackchannelLogout(
            self.session, keys=self.keys, clock=self.clock, issuer=self.issuer, policy=self.token_policy
        )

    def key_rotation(self) -> KeyRotation:
        return KeyRotation(
            self.key_store,
            clock=self.clock,
            timings=KeyTimings.from_settings(self.settings),
            record=audited(self.session, self.clock),
        )

    def key_store_of(self, kind: str) -> KeyStore:
        """The key store ``kind`` names, whichever IDP_KEYS_STORE is in use (``idp keys migrate-store``)."""
        return open_key_store(
            self.settings, engine=self.engine, change_session=lambda: self.session, kind=kind
        )

    # --- the console: district settings and the audit trail -------------------------------
    def district_settings(self) -> DistrictSettings:
        return DistrictSettings(
            self.session,
            options=self.district_options(),
            policies=self.password_policies(),
        )

    def audit_trail(self) -> AuditTrail:
        # IDP_TIMEZONE, once Settings reads it; UTC until then.
        return AuditTrail(self.session, zone=ZoneInfo(self.settings.timezone))

    def emulation(self) -> Emulation:
        return Emulation(
            self.session,
            clock=self.clock,
            sessions=self.sessions(),
            notifier=self.notifier(),
            life=timedelta(seconds=self.settings.impersonation_seconds),
            revoke_session_grants=lambda account_id, sid, reason: self.families().revoke_for_session(
                account_id, sid, reason=reason
            ),
            tell_portals=self.backchannel().tell,
        )

    # --- the console: staff sign-in ---------------------------------------------------------
    def staff_management(self) -> StaffManagement:
        return StaffManagement(self.session)

    def staff(self) -> StaffService:
        return StaffService(
            self.session,
            accounts=self.accounts(),
            policies=self.password_policies(),
            preferences=self.preferences,
            clock=self.clock,
            cipher=TotpCipher(self.secret_key),
            idle=timedelta(seconds=self.settings.staff_idle_seconds),
            district_name=lambda: self.district_options().current().name,
        )

    # --- the console: accounts, students, resetting every password ---------------------------
    def staff_accounts(self) -> StaffAccounts:
        return StaffAccounts(
            self.session,
            clock=self.clock,
            lockout=self.lockout,
            session_policy=self.session_policy,
            administration=lambda actor: self.administration(actor=actor),
            verification=self.email_verification(),
            notifier=self.notifier(),
            sessions=self.sessions(),
            revoke_grants=self._revoke_grants,
            tell_portals=self.backchannel().tell,
            options=self.district_options().current(),
            deletion=self.account_deletion(),
        )

    def account_search(self) -> AccountSearch:
        return AccountSearch(self.session, clock=self.clock, lockout=self.lockout)

    def student_profiles(self) -> StudentProfiles:
        return StudentProfiles(self.session, clock=self.clock, lockout=self.lockout)

    def password_resets(self) -> PasswordResets:
        return PasswordResets(self.session, clock=self.clock)

    # --- mail ------------------------------------------------------------------------------
    def outbox(self) -> Outbox:
        return Outbox(self.session, clock=self.clock, message_domain=message_domain(self.settings.mail_from))

    def notifier(self) -> Notifier:
        return Notifier(self.session, outbox=self.outbox(), composer=self.composer)
