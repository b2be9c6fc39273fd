"""Password rules per school and for the district, checked without HTTP.

The district default follows NIST SP 800-63B-4 §3.1.1.2: at least 15 characters, at least
64 allowed (256 here), any Unicode, no composition rules, no periodic expiry, and a blocklist of
common passwords and context words. A district or school may turn the classic rules on; an
account takes, rule by rule, the strictest value among its students' schools.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import delete, exists, select, update

from idp.accounts import legacy_hashes
from idp.accounts.models import Account
from idp.accounts.passwords import MAX_PASSWORD_LENGTH, PasswordHasher, normalise_password
from idp.accounts.policy_models import PasswordHistory, PasswordPolicyRecord
from idp.accounts.recovery_models import RecoveryToken
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.students.models import GuardianLink, School, Student

NIST_MIN_LENGTH = 15
# How long a temporary password works unless IDP_TEMPORARY_PASSWORD_SECONDS says otherwise.
TEMPORARY_PASSWORD_LIFE = timedelta(days=7)
# SP 800-63B-4 3.1.1.2: verifiers SHOULD permit passwords of at least this many characters.
NIST_PERMITTED_LENGTH = 64
# Bounds an operator may set: NIST's floor of 8, and the longest password accepted at all.
LOWEST_MIN_LENGTH = 8
MAX_HISTORY = 24
# A context word must be this long to count, and a derivative leaves fewer characters than this.
CONTEXT_WORD_MIN = 4
CONTEXT_REMAINDER_MIN = 8


class Violation(enum.StrEnum):
    """Why a new password is refused; the pages word each one (``idp.accounts.views.messages``)."""

    CURRENT_WRONG = "current_wrong"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    UPPER_LOWER = "upper_lower"
    LETTER_NUMBER = "letter_number"
    SPECIAL = "special"
    MISMATCH = "mismatch"
    REUSED = "reused"
    COMMON = "common"
    CONTEXT = "context"


class DepartureRule(enum.StrEnum):
    """A rule by which a policy can depart from NIST SP 800-63B-4; named as ``PasswordRules`` names it."""

    MIN_LENGTH = "min_length"
    MAX_LENGTH = "max_length"
    REQUIRE_UPPER_LOWER = "require_upper_lower"
    REQUIRE_LETTER_NUMBER = "require_letter_number"
    REQUIRE_SPECIAL = "require_special"
    MAX_AGE = "max_age"
    BLOCK_COMMON = "block_common"
    BLOCK_CONTEXT = "block_context"


@dataclass(frozen=True)
class Departure:
    """One way a policy departs from NIST SP 800-63B-4 §3.1.1.2, and what the guideline says."""

    rule: DepartureRule
    reason: str


_COMPOSITION = "SP 800-63B-4 3.1.1.2 forbids requiring mixtures of character types"


@dataclass(frozen=True)
class PasswordRules:
    min_length: int = NIST_MIN_LENGTH
    require_upper_lower: bool = False
    require_letter_number: bool = False
    require_special: bool = False
    history_count: int = 0
    max_age: timedelta | None = None
    block_common: bool = True
    block_context: bool = True
    max_length: int = field(default=MAX_PASSWORD_LENGTH)

    def strictest_with(self, other: PasswordRules) -> PasswordRules:
        """Return, rule by rule, the stricter of ``self`` and ``other``."""
        ages = [age for age in (self.max_age, other.max_age) if age is not None]
        return PasswordRules(
            min_length=max(self.min_length, other.min_length),
            require_upper_lower=self.require_upper_lower or other.require_upper_lower,
            require_letter_number=self.require_letter_number or other.require_letter_number,
            require_special=self.require_special or other.require_special,
            history_count=max(self.history_count, other.history_count),
            max_age=min(ages) if ages else None,
            block_common=self.block_common or other.block_common,
            block_context=self.block_context or other.block_context,
            max_length=min(self.max_length, other.max_length),
        )

    @classmethod
    def strictest(cls, rules: Iterable[PasswordRules]) -> PasswordRules | None:
        combined: PasswordRules | None = None
        for each in rules:
            combined = each if combined is None else combined.strictest_with(each)
        return combined

    @classmethod
    def from_record(cls, record: PasswordPolicyRecord) -> PasswordRules:
        return cls(
            min_length=record.min_length,
            require_upper_lower=record.require_upper_lower,
            require_letter_number=record.require_letter_number,
            require_special=record.require_special,
            history_count=record.history_count,
            max_age=timedelta(days=record.max_age_days) if record.max_age_days else None,
            block_common=record.block_common,
            block_context=record.block_context,
        )

    def check(self, password: str, *, context: Sequence[str] = ()) -> list[Violation]:
        """Return every rule ``password`` breaks (history aside), in the order the form lists them."""
        normalised = normalise_password(password)
        violations: list[Violation] = []
        if len(normalised) < self.min_length:
            violations.append(Violation.TOO_SHORT)
        if max(len(password), len(normalised)) > self.max_length:
            violations.append(Violation.TOO_LONG)
        if self.require_upper_lower and not (
            any(ch.isupper() for ch in normalised) and any(ch.islower() for ch in normalised)
        ):
            violations.append(Violation.UPPER_LOWER)
        if self.require_letter_number and not (
            any(ch.isalpha() for ch in normalised) and any(ch.isdigit() for ch in normalised)
        ):
            violations.append(Violation.LETTER_NUMBER)
        if self.require_special and not any(_is_special(ch) for ch in normalised):
            violations.append(Violation.SPECIAL)
        if self.block_common and is_common_password(normalised):
            violations.append(Violation.COMMON)
        if self.block_context and derives_from_context(normalised, context):
            violations.append(Violation.CONTEXT)
        return violations

    def departures(self) -> list[Departure]:
        """Return where these rules depart from NIST SP 800-63B-4 §3.1.1.2, in the order of the rules."""
        found: list[Departure] = []
        # 15 is the floor for a password that is the only factor (8 only with a second factor), and
        # sign-in is password-only today.
        if self.min_length < NIST_MIN_LENGTH:
            found.append(
                Departure(
                    DepartureRule.MIN_LENGTH,
                    f"SP 800-63B-4 3.1.1.2 requires at least {NIST_MIN_LENGTH} characters when a "
                    "password is the only factor, as it is at sign-in here",
                )
            )
        if self.max_length < NIST_PERMITTED_LENGTH:
            found.append(
                Departure(
                    DepartureRule.MAX_LENGTH,
                    f"SP 800-63B-4 3.1.1.2 says passwords of at least {NIST_PERMITTED_LENGTH} "
                    "characters should be permitted",
                )
            )
        if self.require_upper_lower:
            found.append(Departure(DepartureRule.REQUIRE_UPPER_LOWER, _COMPOSITION))
        if self.require_letter_number:
            found.append(Departure(DepartureRule.REQUIRE_LETTER_NUMBER, _COMPOSITION))
        if self.require_special:
            found.append(Departure(DepartureRule.REQUIRE_SPECIAL, _COMPOSITION))
        if self.max_age is not None:
            found.append(
                Departure(
                    DepartureRule.MAX_AGE,
                    "SP 800-63B-4 3.1.1.2 forbids requiring periodic password changes "
                    "(a change is forced only on evidence of compromise)",
                )
            )
        if not self.block_common:
            found.append(
                Departure(
                    DepartureRule.BLOCK_COMMON,
                    "SP 800-63B-4 3.1.1.2 requires checking new passwords against a blocklist of "
                    "commonly used, expected or compromised passwords",
                )
            )
        if not self.block_context:
            found.append(
                Departure(
                    DepartureRule.BLOCK_CONTEXT,
                    "SP 800-63B-4 3.1.1.2 counts context-specific words (the service's name, the "
                    "username and their derivatives) among the expected passwords a blocklist refuses",
                )
            )
        return found

    def has_expired(self, changed_at: datetime | None, now: datetime) -> bool:
        """Return whether a password set at ``changed_at`` is past the maximum age (never, by default)."""
        if self.max_age is None or changed_at is None:
            return False
        return now - changed_at >= self.max_age


DISTRICT_DEFAULT = PasswordRules()

# Only a policy with a maximum age can expire a password: most districts have none.
ANY_MAX_AGE_POLICY = exists().where(PasswordPolicyRecord.max_age_days.is_not(None))


class ChangeReason(enum.StrEnum):
    """Why the sign-in stops at "Change Your Password"."""

    TEMPORARY = "temporary"
    EXPIRED = "expired"


def _is_special(ch: str) -> bool:
    # Anything that is neither a letter nor a number: punctuation, symbols, spaces.
    return not unicodedata.category(ch).startswith(("L", "N"))


def _compact(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


@cache
def _common_passwords() -> frozenset[str]:
    # zxcvbn's list of the 30 000 most common passwords from real breaches.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

    return frozenset(word.casefold() for word in FREQUENCY_LISTS["passwords"])


_DECORATION = re.compile(r"[\W\d_]+$")


def is_common_password(password: str) -> bool:
    """Return whether ``password`` is a common one, repeated, or one with digits or symbols added."""
    folded = password.casefold()
    common = _common_passwords()
    candidates = {
        folded,
        folded.strip(),
        _DECORATION.sub("", folded),
        _DECORATION.sub("", folded[::-1])[::-1],
    }
    for unit in range(1, len(folded) // 2 + 1):
        if len(folded) % unit == 0 and folded[:unit] * (len(folded) // unit) == folded:
            candidates.add(folded[:unit])  # "passwordpassword", "aaaaaaaaaaaaaaaa"
            if unit <= 3:
                return True
            break
    return any(candidate in common for candidate in candidates if candidate)


def derives_from_context(password: str, context: Sequence[str]) -> bool:
    """Return whether ``password`` is a context word (username, district…) with little added."""
    compact = _compact(password)
    terms: set[str] = set()
    for word in context:
        terms.add(_compact(word))
        terms.update(_compact(part) for part in re.split(r"[\W_]+", word))
    found = False
    for term in sorted((t for t in terms if len(t) >= CONTEXT_WORD_MIN), key=len, reverse=True):
        if term in compact:
            found = True
            compact = compact.replace(term, "")
    return found and len(compact) < CONTEXT_REMAINDER_MIN


class PasswordPolicyService:
    """Which rules apply to whom, the password history, and the policies operators set."""

    def __init__(
        self,
        session: DbSession,
        *,
        hasher: PasswordHasher,
        clock: Clock,
        temporary_life: timedelta = TEMPORARY_PASSWORD_LIFE,
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.clock = clock
        self.temporary_life = temporary_life

    def district_default(self) -> PasswordRules:
        record = self.session.execute(
            select(PasswordPolicyRecord).where(PasswordPolicyRecord.school_id.is_(None))
        ).scalar_one_or_none()
        return DISTRICT_DEFAULT if record is None else PasswordRules.from_record(record)

    def strictest_possible(self) -> PasswordRules:
        """Return, rule by rule, the strictest of the district's and every school's own rules.

        What Create Account shows before it knows the students' schools: whatever they turn out
        to be, a password that meets these meets theirs.
        """
        combined = PasswordRules.strictest(rules for _, rules in self.all_policies())
        assert combined is not None  # the district's rules are always there
        return combined

    def rules_for_schools(self, school_ids: Iterable[str]) -> PasswordRules:
        """Return the strictest rules among these schools; a school without its own takes the district's."""
        wanted = set(school_ids)
        if not wanted:
            return self.district_default()
        records = {
            record.school_id: PasswordRules.from_record(record)
            for record in self.session.execute(
                select(PasswordPolicyRecord).where(PasswordPolicyRecord.school_id.in_(wanted))
            ).scalars()
        }
        rules = [records[school_id] for school_id in wanted if school_id in records]
        if len(records) < len(wanted):
            rules.append(self.district_default())
        combined = PasswordRules.strictest(rules)
        assert combined is not None
        return combined

    def rules_for_account(self, account: Account) -> PasswordRules:
        school_ids = self.session.execute(
            select(Student.school_id)
            .join(GuardianLink, GuardianLink.student_id == Student.id)
            .where(GuardianLink.account_id == account.id, GuardianLink.status == "active")
            .distinct()
        ).scalars()
        return self.rules_for_schools(school_ids)

    def change_due(self, account: Account) -> ChangeReason | None:
        """Return why ``account`` must change its password before signing in, if it must."""
        if account.must_change_password or account.password_changed_at is None:
            return ChangeReason.TEMPORARY
        if not self.session.execute(select(ANY_MAX_AGE_POLICY)).scalar():
            # No policy can have expired it: the rules need not be computed.
            return None
        rules = self.rules_for_account(account)
        if rules.has_expired(account.password_changed_at, self.clock.now()):
            return ChangeReason.EXPIRED
        return None

    def was_used_before(self, account: Account, password: str, rules: PasswordRules) -> bool:
        """Return whether ``password`` is the current one or among the last ``history_count - 1``."""
        if rules.history_count <= 0:
            return False
        previous = self.session.execute(
            select(PasswordHistory.password_hash)
            .where(PasswordHistory.account_id == account.id)
            .order_by(PasswordHistory.replaced_at.desc(), PasswordHistory.id)
            .limit(rules.history_count - 1)
        ).scalars()
        hashes = [account.password_hash, *previous]
        # Every hash is checked, matched or not, so the time taken says nothing about which.
        matches = [self.hasher.verify(stored, password) for stored in hashes]
        return any(matches)

    def reuses(self, account: Account, password: str, rules: PasswordRules) -> bool:
        """Return whether ``password`` is the current one or one the history still holds.

        For a new password the holder did not choose freely (a reset, a forced change): the current
        one never counts as new, whatever the history keeps.
        """
        if rules.history_count > 0:
            return self.was_used_before(account, password, rules)
        return self.hasher.verify(account.password_hash, password)

    def set_password(self, account: Account, password: str) -> None:
        """Make ``password`` the account's own, keeping the old hash in the history."""
        now = self.clock.now()
        self._replace_hash(account, password)
        account.password_changed_at = now
        account.must_change_password = False
        account.temporary_password_expires_at = None
        self.session.flush()
        audit(self.session, "password.changed", account_id=account.id)

    def temporary_until(self) -> datetime:
        """When a temporary password given now stops working (``IDP_TEMPORARY_PASSWORD_SECONDS``)."""
        return self.clock.now() + self.temporary_life

    def set_temporary_password(self, account: Account, password: str) -> None:
        """Give the account a password from staff, to be changed at the next sign-in before it expires.

        Audited by the caller (``AccountAdministration``), which knows who gave it.
        """
        self._replace_hash(account, password)
        account.password_changed_at = None
        account.must_change_password = True
        account.temporary_password_expires_at = self.temporary_until()
        self.session.flush()

    def _replace_hash(self, account: Account, password: str) -> None:
        """Keep the old hash in the history, set the new one, and end the account's recovery links."""
        now = self.clock.now()
        # An imported legacy hash goes without a trace (DESIGN, "Secrets at rest"), as at its upgrade.
        if not legacy_hashes.is_legacy(account.password_scheme):
            self.session.add(
                PasswordHistory(account_id=account.id, password_hash=account.password_hash, replaced_at=now)
            )
        account.password_hash = self.hasher.hash(password)
        account.password_scheme, account.legacy_salt = legacy_hashes.MODERN_SCHEME, None
        # A recovery link dies with any password change (STYLE 9), including one staff make.
        self.session.execute(
            update(RecoveryToken)
            .where(RecoveryToken.account_id == account.id, RecoveryToken.used_at.is_(None))
            .values(used_at=now)
        )
        self.session.flush()
        stale = (
            select(PasswordHistory.id)
            .where(PasswordHistory.account_id == account.id)
            .order_by(PasswordHistory.replaced_at.desc(), PasswordHistory.id)
            .offset(MAX_HISTORY)
        )
        stale_ids = list(self.session.execute(stale).scalars())
        if stale_ids:
            self.session.execute(delete(PasswordHistory).where(PasswordHistory.id.in_(stale_ids)))

    # --- what operators set (``idp policy``) ---------------------------------------------
    def record_for(self, school_code: str | None) -> PasswordPolicyRecord | None:
        school_id = self._school_id(school_code)
        return self.session.execute(
            select(PasswordPolicyRecord).where(
                PasswordPolicyRecord.school_id.is_(None)
                if school_id is None
                else PasswordPolicyRecord.school_id == school_id
            )
        ).scalar_one_or_none()

    def set_policy(
        self, school_code: str | None, *, actor: str | None = None, **changes: object
    ) -> PasswordRules:
        """Change some rules of a school's policy (or the district's), starting from what applies now."""
        record = self.record_for(school_code)
        if record is None:
            base = self.district_default() if school_code is not None else DISTRICT_DEFAULT
            record = PasswordPolicyRecord(
                school_id=self._school_id(school_code),
                min_length=base.min_length,
                require_upper_lower=base.require_upper_lower,
                require_letter_number=base.require_letter_number,
                require_special=base.require_special,
                history_count=base.history_count,
                max_age_days=base.max_age.days if base.max_age else None,
                block_common=base.block_common,
                block_context=base.block_context,
            )
            self.session.add(record)
        for name, value in changes.items():
            if value is None:
                continue
            if not hasattr(record, name):
                raise ValueError(f"unknown policy rule {name!r}")
            setattr(record, name, value)
        if record.max_age_days == 0:
            record.max_age_days = None
        _validate(record)
        record.updated_at = self.clock.now()
        self.session.flush()
        who: dict[str, Any] = {} if actor is None else {"actor": actor}
        audit(self.session, "password_policy.changed", school=school_code or "district", **who)
        return PasswordRules.from_record(record)

    def reset_policy(self, school_code: str | None, *, actor: str | None = None) -> None:
        """Drop a school's own policy (it takes the district's again), or the district's (back to NIST)."""
        record = self.record_for(school_code)
        if record is not None:
            self.session.delete(record)
            self.session.flush()
            who: dict[str, Any] = {} if actor is None else {"actor": actor}
            audit(self.session, "password_policy.removed", school=school_code or "district", **who)

    def all_policies(self) -> list[tuple[str | None, PasswordRules]]:
        """Return the district's rules first, then each school's own, by school code."""
        rows = self.session.execute(
            select(School.code, PasswordPolicyRecord)
            .join(School, School.id == PasswordPolicyRecord.school_id)
            .order_by(School.code)
        ).all()
        return [(None, self.district_default())] + [
            (code, PasswordRules.from_record(record)) for code, record in rows
        ]

    def _school_id(self, school_code: str | None) -> str | None:
        if school_code is None:
            return None
        school_id = self.session.execute(select(School.id).where(School.code == school_code)).scalar()
        if school_id is None:
            raise UnknownSchool(school_code)
        return school_id


class UnknownSchool(LookupError):
    pass


def _validate(record: PasswordPolicyRecord) -> None:
    if not LOWEST_MIN_LENGTH <= record.min_length <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"the minimum length must be {LOWEST_MIN_LENGTH} to {MAX_PASSWORD_LENGTH}")
    if not 0 <= record.history_count <= MAX_HISTORY:
        raise ValueError(f"the history must be 0 to {MAX_HISTORY} passwords")
    if record.max_age_days is not None and not 1 <= record.max_age_days <= 3650:
        raise ValueError("the maximum age must be 1 to 3650 days (0 for none)")


__all__ = [
    "DISTRICT_DEFAULT",
    "Departure",
    "DepartureRule",
    "PasswordPolicyService",
    "PasswordRules",
    "UnknownSchool",
    "Violation",
    "derives_from_context",
    "is_common_password",
]
