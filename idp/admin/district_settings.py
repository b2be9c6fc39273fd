"""District options and password requirements as staff change them: the data ``idp district`` and
``idp policy`` set, behind the actor's permission, each change one audited transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from idp.accounts.district import DistrictOptions, DistrictOptionsService
from idp.accounts.password_policy import PasswordPolicyService, PasswordRules, UnknownSchool
from idp.admin.actor import Actor
from idp.admin.roles import Permission
from idp.db import DbSession
from idp.students.models import School

# The options the console edits; the name and the relationship labels stay with ``idp district``.
CONSOLE_OPTIONS = (
    "allow_password_change",
    "allow_email_change",
    "require_email_verification",
    "lockout_threshold",
    "lockout_seconds",
    "single_use_access_passwords",
)
POLICY_RULES = (
    "min_length",
    "require_upper_lower",
    "require_letter_number",
    "require_special",
    "history_count",
    "max_age_days",
    "block_common",
    "block_context",
)


class SettingRefused(ValueError):
    """A value breaks a rule of the domain (the message is the one ``idp`` prints); nothing changed."""


@dataclass(frozen=True)
class SchoolPolicy:
    """A school's password rules: its own, or the district default it takes (``own`` false)."""

    code: str
    name: str
    rules: PasswordRules
    own: bool


class DistrictSettings:
    def __init__(
        self,
        session: DbSession,
        *,
        options: DistrictOptionsService,
        policies: PasswordPolicyService,
    ) -> None:
        self.session = session
        self.options = options
        self.policies = policies

    # --- district options ------------------------------------------------------------------
    def current(self, actor: Actor) -> DistrictOptions:
        """Return the options in force."""
        actor.require(Permission.DISTRICT_OPTIONS)
        return self.options.current()

    def change_options(self, actor: Actor, **changes: Any) -> DistrictOptions:
        """Store the options that differ from those in force, one audit event each, and commit."""
        actor.require(Permission.DISTRICT_OPTIONS)
        unknown = set(changes) - set(CONSOLE_OPTIONS)
        if unknown:
            raise SettingRefused(f"unknown district option {sorted(unknown)[0]!r}")
        now = self.options.current()
        changed = {name: value for name, value in changes.items() if getattr(now, name) != value}
        try:
            result = self.options.set(actor=actor.label, **changed)
        except ValueError as error:
            self.session.rollback()
            raise SettingRefused(str(error)) from error
        self.session.commit()
        return result

    # --- password requirements -------------------------------------------------------------
    def school_policies(self, actor: Actor) -> tuple[PasswordRules, list[SchoolPolicy]]:
        """Return the district default and every school's rules, by school code."""
        actor.require(Permission.PASSWORD_POLICIES)
        own = {code: rules for code, rules in self.policies.all_policies() if code is not None}
        default = self.policies.district_default()
        schools = self.session.execute(select(School.code, School.name).order_by(School.code)).all()
        return default, [
            SchoolPolicy(code, name, own.get(code, default), code in own) for code, name in schools
        ]

    def policy(self, actor: Actor, school_code: str | None) -> SchoolPolicy:
        """Return one school's rules (``None``: the district default); ``UnknownSchool`` if none."""
        actor.require(Permission.PASSWORD_POLICIES)
        default = self.policies.district_default()
        if school_code is None:
            return SchoolPolicy("", "", default, True)
        name = self.session.execute(select(School.name).where(School.code == school_code)).scalar()
        if name is None:
            raise UnknownSchool(school_code)
        record = self.policies.record_for(school_code)
        if record is None:
            return SchoolPolicy(school_code, name, default, False)
        return SchoolPolicy(school_code, name, PasswordRules.from_record(record), True)

    def set_policy(self, actor: Actor, school_code: str | None, **rules: Any) -> PasswordRules:
        """Set a school's rules (``None``: the district default), audited, in one commit."""
        actor.require(Permission.PASSWORD_POLICIES)
        unknown = set(rules) - set(POLICY_RULES)
        if unknown:
            raise SettingRefused(f"unknown policy rule {sorted(unknown)[0]!r}")
        try:
            result = self.policies.set_policy(school_code, actor=actor.label, **rules)
        except UnknownSchool:
            self.session.rollback()
            raise
        except ValueError as error:
            self.session.rollback()
            raise SettingRefused(str(error)) from error
        self.session.commit()
        return result

    def reset_policy(self, actor: Actor, school_code: str) -> None:
        """Drop a school's own rules, so that it takes the district default again."""
        actor.require(Permission.PASSWORD_POLICIES)
        try:
            self.policies.reset_policy(school_code, actor=actor.label)
        except UnknownSchool:
            self.session.rollback()
            raise
        self.session.commit()


__all__ = ["DistrictSettings", "SchoolPolicy", "SettingRefused", "UnknownSchool"]
