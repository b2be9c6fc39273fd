"""Policies as frozen dataclasses: every number the rules use lives here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from idp.config import Settings


@dataclass(frozen=True)
class HashingPolicy:
    """argon2id parameters; hashes made with other values are upgraded at sign-in."""

    time_cost: int = 2
    memory_kib: int = 19_456
    parallelism: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> HashingPolicy:
        return cls(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)


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

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenPolicy:
        return cls(
            code_life=timedelta(seconds=settings.code_seconds),
            access_token_life=timedelta(seconds=settings.access_token_seconds),
            id_token_life=timedelta(seconds=settings.id_token_seconds),
        )
