"""Device cookies (OWASP, "Slow brute force" / device cookies): browsers that signed in before.

A browser that signed in to an account carries a signed cookie naming the account and a
random device id. Its failed sign-ins count against that device rather than the username,
and a locked username does not stop it: a stranger who locks a parent's username cannot lock
the parent out of the parent's own browser. See docs/operations/lockout.md.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

from idp.clock import Clock
from idp.policy import LockoutPolicy

DEVICE_COOKIE_SALT = "idp.device-cookie"  # itsdangerous salt: this purpose only
MAX_COOKIE_CHARS = 4096


@dataclass(frozen=True)
class TrustedDevice:
    account_id: str
    device_id: str
    issued_at: int  # seconds since the epoch


class DeviceCookies:
    """Read and issue the signed device cookie; one cookie remembers a few accounts."""

    def __init__(self, secret_key: str, *, clock: Clock, policy: LockoutPolicy) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=DEVICE_COOKIE_SALT)
        self.clock = clock
        self.policy = policy

    def read(self, value: str | None) -> tuple[TrustedDevice, ...]:
        """Return the live devices in a cookie; a forged, malformed or old one counts for nothing."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return ()
        try:
            payload = self._serializer.loads(value)
        except (BadSignature, ValueError, UnicodeError):
            return ()
        if not isinstance(payload, list):
            return ()
        oldest = self._now() - int(self.policy.device_cookie_life.total_seconds())
        devices = []
        for entry in payload[: self.policy.devices_per_browser]:
            if (
                isinstance(entry, list)
                and len(entry) == 3
                and isinstance(entry[0], str)
                and isinstance(entry[1], str)
                and isinstance(entry[2], int)
                and entry[2] >= oldest
            ):
                devices.append(TrustedDevice(entry[0], entry[1], entry[2]))
        return tuple(devices)

    def issue(self, value: str | None, account_id: str) -> str:
        """Return a cookie value that trusts this browser for ``account_id`` with a fresh device id."""
        others = [d for d in self.read(value) if d.account_id != account_id]
        fresh = TrustedDevice(account_id, secrets.token_urlsafe(16), self._now())
        kept = [fresh, *others][: self.policy.devices_per_browser]
        return self._serializer.dumps([[d.account_id, d.device_id, d.issued_at] for d in kept])

    @property
    def max_age(self) -> timedelta:
        return self.policy.device_cookie_life

    def _now(self) -> int:
        now: datetime = self.clock.now()
        return int(now.timestamp())
