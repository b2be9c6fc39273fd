"""Bounded hashing: at most K argon2 computations at once per process, so a flood cannot exhaust memory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter

from idp.accounts.passwords import PasswordHasher
from idp.policy import HashingPolicy

ARGON2_VERIFICATIONS = Counter("idp_argon2_verifications", "argon2id verifications computed.")
ARGON2_BUSY = Counter(
    "idp_argon2_busy", "Requests answered 503 because every argon2 slot of the process was taken."
)


class HashingBusy(Exception):
    """Every argon2 slot of this process is taken; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("every argon2 slot is taken")
        self.retry_after = retry_after


class HashingSlots:
    """A semaphore of ``policy.max_concurrent`` slots; a thread that holds one may nest calls."""

    def __init__(self, policy: HashingPolicy) -> None:
        self.limit = policy.max_concurrent
        self.wait_seconds = policy.slot_wait.total_seconds()
        self._semaphore = threading.BoundedSemaphore(policy.max_concurrent)
        self._held = threading.local()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold a slot for the block; raise ``HashingBusy`` if none frees up quickly."""
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        if not self._semaphore.acquire(timeout=self.wait_seconds):
            ARGON2_BUSY.inc()
            raise HashingBusy()
        self._held.depth = 1
        try:
            yield
        finally:
            self._held.depth = 0
            self._semaphore.release()


class BoundedPasswordHasher(PasswordHasher):
    """The provider's hasher: every hash and verify holds a slot, and verifies are counted."""

    def __init__(self, policy: HashingPolicy) -> None:
        super().__init__(policy)
        self.slots = HashingSlots(policy)

    def hash(self, password: str) -> str:
        with self.slots.hold():
            return super().hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        with self.slots.hold():
            ARGON2_VERIFICATIONS.inc()
            return super().verify(stored_hash, password)
