"""Policies as frozen dataclasses: every number the rules use lives here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from limits import parse_many

from idp.config import Settings
from idp.counters.store import Threshold


@dataclass(frozen=True)
class HashingPolicy:
    """argon2id parameters; hashes made with other values are upgraded at sign-in."""

    time_cost: int = 2
    memory_kib: int = 19_456
    parallelism: int = 1
    # At most this many argon2 computations at once per process (each holds memory_kib); a
    # request that finds them all taken waits at most ``slot_wait``, then gets a 503.
    max_concurrent: int = 4
    slot_wait: timedelta = timedelta(milliseconds=250)

    @classmethod
    def from_settings(cls, settings: Settings) -> HashingPolicy:
        return cls(
            settings.argon2_time_cost,
            settings.argon2_memory_kib,
            settings.argon2_parallelism,
            max_concurrent=settings.argon2_max_concurrent,
        )


@dataclass(frozen=True)
class LockoutPolicy:
    """Failed sign-ins counted over ``window`` (reset by a success) lock for ``duration``."""

    threshold: int = 10
    duration: timedelta = timedelta(minutes=5)
    window: timedelta = timedelta(minutes=15)
    # Browsers that signed in before carry a device cookie this long (OWASP's device cookies);
    # one cookie remembers this many accounts (a family computer).
    device_cookie_life: timedelta = timedelta(days=180)
    devices_per_browser: int = 5

    @property
    def attempts(self) -> Threshold:
        return Threshold(limit=self.threshold, window=self.window, lock=self.duration)

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutPolicy:
        return cls(
            threshold=settings.lockout_threshold,
            duration=timedelta(seconds=settings.lockout_seconds),
            window=timedelta(seconds=settings.lockout_window_seconds),
        )


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(
            idle=timedelta(seconds=settings.session_idle_seconds),
            absolute=timedelta(seconds=settings.session_max_seconds),
        )


@dataclass(frozen=True)
class TokenPolicy:
    code_life: timedelta = timedelta(seconds=60)
    access_token_life: timedelta = timedelta(minutes=10)
    id_token_life: timedelta = timedelta(minutes=10)
    # A pending /authorize request waits this long for the user to sign in.
    authorization_request_life: timedelta = timedelta(minutes=30)
    # A refresh-token family's absolute life, and how long its current token may go unused.
    refresh_token_life: timedelta = timedelta(days=30)
    refresh_idle: timedelta = timedelta(days=14)
    # Back-channel logout tokens are delivered at once, so a short life is plenty (OIDC BCL 2.4).
    logout_token_life: timedelta = timedelta(minutes=2)
    # Each back-channel POST may take this long, and all of one logout together at most the second
    # figure: the sign-out page never waits longer for slow portals.
    backchannel_timeout: timedelta = timedelta(seconds=2)
    backchannel_total: timedelta = timedelta(seconds=3)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenPolicy:
        return cls(
            code_life=timedelta(seconds=settings.code_seconds),
            access_token_life=timedelta(seconds=settings.access_token_seconds),
            id_token_life=timedelta(seconds=settings.id_token_seconds),
            refresh_token_life=timedelta(seconds=settings.refresh_token_seconds),
            refresh_idle=timedelta(seconds=settings.refresh_idle_seconds),
        )


@dataclass(frozen=True)
class RecoveryPolicy:
    """ "Having trouble signing in?": how long a reset link works, and how much mail one account gets."""

    token_life: timedelta = timedelta(minutes=30)
    # Requests beyond this many per account and hour are dropped by the worker: the trouble
    # page cannot be used to flood someone's inbox (its answer is the same either way).
    mails_per_hour: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> RecoveryPolicy:
        return cls(token_life=timedelta(seconds=settings.recovery_token_seconds))


@dataclass(frozen=True)
class AccessPolicy:
    """Guessing students' Access IDs: wrong Access Passwords pause one Access ID, and every check
    counts against the client's address (the first limit of ``IDP_RATE_LIMIT_REGISTER``)."""

    per_access_id: Threshold
    per_address: Threshold

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        pause = timedelta(seconds=settings.access_id_pause_seconds)
        rate = parse_many(settings.rate_limit_register)[0]
        window = timedelta(seconds=rate.get_expiry())
        return cls(
            per_access_id=Threshold(limit=settings.access_id_failures, window=pause, lock=pause),
            per_address=Threshold(limit=rate.amount, window=window, lock=window),
        )


@dataclass(frozen=True)
class Backoff:
    """Waits of 1, 2, 4 … times ``first`` between attempts, at most ``longest``; ``attempts`` in all."""

    first: timedelta
    longest: timedelta
    attempts: int

    def wait(self, attempts_so_far: int) -> timedelta:
        """How long to wait after the ``attempts_so_far``-th attempt failed."""
        return min(self.first * (1 << max(attempts_so_far - 1, 0)), self.longest)


# Mail: 1, 2, 4 … 32 minutes, then hourly; the last attempt comes about a day after the first, so an
# SMTP outage of a day loses nothing.
MAIL_RETRIES = Backoff(first=timedelta(minutes=1), longest=timedelta(hours=1), attempts=30)
# Back-channel logout: 1, 2, 4 … 32 minutes, about an hour in all, beyond any portal's idle timeout.
BACKCHANNEL_RETRIES = Backoff(first=timedelta(minutes=1), longest=timedelta(minutes=32), attempts=7)
