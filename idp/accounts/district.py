"""District options: data staff may change, with defaults from the environment."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import select

from idp.accounts.policy_models import DistrictOption
from idp.audit import audit
from idp.clock import Clock
from idp.config import Settings
from idp.db import DbSession
from idp.students.relationships import DEFAULT_RELATIONSHIPS


@dataclass(frozen=True)
class DistrictOptions:
    name: str = "School District"
    require_email_verification: bool = False
    allow_email_change: bool = True
    allow_password_change: bool = True
    relationships: tuple[str, ...] = DEFAULT_RELATIONSHIPS
    # Failed sign-ins that lock a username, and how long the lock lasts (IDP_LOCKOUT_THRESHOLD and
    # IDP_LOCKOUT_SECONDS until staff set them).
    lockout_threshold: int = 10
    lockout_seconds: int = 300
    # The Infinite Campus way: a letter's Access Password links one guardian, the next needs a new one.
    single_use_access_passwords: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DistrictOptions:
        return cls(
            require_email_verification=settings.require_email_verification,
            lockout_threshold=settings.lockout_threshold,
            lockout_seconds=settings.lockout_seconds,
        )


OPTION_NAMES = tuple(f.name for f in fields(DistrictOptions))
# SP 800-63B-4 3.2.2: no more than 100 consecutive failed attempts; a lock lasts a minute to a day.
LOCKOUT_THRESHOLDS = (1, 100)
LOCKOUT_SECONDS = (60, 86_400)


class DistrictOptionsService:
    def __init__(self, session: DbSession, *, defaults: DistrictOptions, clock: Clock) -> None:
        self.session = session
        self.defaults = defaults
        self.clock = clock

    def current(self) -> DistrictOptions:
        """Return the defaults overlaid with what staff set."""
        stored = {row.name: row.value for row in self.session.execute(select(DistrictOption)).scalars()}
        values: dict[str, Any] = {}
        for name in OPTION_NAMES:
            if name in stored:
                value = stored[name]
                values[name] = tuple(value) if name == "relationships" else value
        return replace(self.defaults, **values)

    def set(self, *, actor: str | None = None, **changes: Any) -> DistrictOptions:
        """Store the given options (``None`` leaves one as it is); ``actor`` names who, for the audit."""
        who: dict[str, Any] = {} if actor is None else {"actor": actor}
        for name, value in changes.items():
            if value is None:
                continue
            if name not in OPTION_NAMES:
                raise ValueError(f"unknown district option {name!r}")
            value = _checked(name, value)
            row = self.session.get(DistrictOption, name)
            stored = list(value) if isinstance(value, tuple) else value
            if row is None:
                self.session.add(DistrictOption(name=name, value=stored, updated_at=self.clock.now()))
            else:
                row.value, row.updated_at = stored, self.clock.now()
            audit(self.session, "district_option.changed", option=name, value=stored, **who)
        self.session.flush()
        return self.current()


def _checked(name: str, value: Any) -> Any:
    if name == "relationships":
        labels = tuple(dict.fromkeys(label.strip() for label in value if label.strip()))
        if not labels or any(len(label) > 32 for label in labels):
            raise ValueError("relationships must list 1 or more labels of at most 32 characters")
        return labels
    if name == "lockout_threshold":
        low, high = LOCKOUT_THRESHOLDS
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"the lockout threshold must be {low} to {high} failed sign-ins")
        return value
    if name == "lockout_seconds":
        low, high = LOCKOUT_SECONDS
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"the lockout must last {low} to {high} seconds")
        return value
    if name == "name":
        if not str(value).strip() or len(str(value)) > 200:
            raise ValueError("the district name must be 1 to 200 characters")
        return str(value).strip()
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value
