"""Key rotation in two steps: publish a key first, sign with it later, publish it until its tokens die.

A ``next`` key is in the JWKS for at least the lead time before it may sign, so every
relying party's cached JWKS holds it by then; a ``retired`` key stays in the JWKS for the
grace time, so every token it signed expires before its key disappears. Every change is
made under the store's lock, on the set as it is then, and written atomically (idp.keys.keystore):
the rules are the same whichever store, files or database, holds the set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from idp.audit import audit
from idp.clock import Clock
from idp.config import Settings
from idp.db import DbSession
from idp.keys.durations import describe
from idp.keys.files import FileKeyStore
from idp.keys.keystore import KeyDraft, KeyEvent, KeyStore, Recorder
from idp.keys.store import SUPPORTED_ALGORITHMS, KeyRecord

__all__ = ["KeyChangeRefused", "KeyChanges", "KeyEvent", "KeyRotation", "KeyTimings", "Skipped", "audited"]


@dataclass(frozen=True)
class KeyTimings:
    """How long keys are published before they sign and after they stop."""

    jwks_max_age: timedelta
    check_interval: timedelta
    longest_token_life: timedelta

    @property
    def lead(self) -> timedelta:
        """How long a next key is published before it may sign.

        Twice the JWKS cache time (a cache may have fetched just before the key appeared,
        and shared caches may stack), plus the manifest check interval: a process may
        still be serving the previous JWKS for that long.
        """
        return 2 * self.jwks_max_age + self.check_interval

    @property
    def grace(self) -> timedelta:
        """How long a retired key stays published after it stops signing.

        The life of the last token it signed, plus the check interval (processes may sign
        with it until they see the change), plus the JWKS cache time (DESIGN's margin).
        """
        return self.longest_token_life + self.jwks_max_age + self.check_interval

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyTimings:
        # ID tokens and access tokens are the JWTs we sign; codes and refresh tokens are opaque.
        longest = max(settings.id_token_seconds, settings.access_token_seconds)
        return cls(
            jwks_max_age=timedelta(seconds=settings.jwks_max_age),
            check_interval=timedelta(seconds=settings.keys_check_seconds),
            longest_token_life=timedelta(seconds=longest),
        )

    def ready_at(self, record: KeyRecord) -> datetime:
        """When a next key has been published long enough to sign."""
        return record.created_at + self.lead

    def leaves_at(self, record: KeyRecord) -> datetime | None:
        """When a retired or revoked key's record may be pruned (unknown without its time)."""
        since = record.retired_at if record.state == "retired" else record.revoked_at
        return None if since is None else since + self.grace


# --- outcomes ------------------------------------------------------------------------------
class KeyChangeRefused(Exception):
    """The key set was left as it was; the message says why and what to do instead."""


class UnknownKey(KeyChangeRefused):
    def __init__(self, kid: str) -> None:
        super().__init__(f"no key with kid {kid!r} in the key set (see `idp keys list`)")
        self.kid = kid


class NextKeyTooYoung(KeyChangeRefused):
    def __init__(self, record: KeyRecord, ready_at: datetime, lead: timedelta) -> None:
        super().__init__(
            f"the next {record.alg} key {record.kid} has been published for less than the lead "
            f"time ({describe(lead)}), so relying parties may not have it yet; rotate after "
            f"{ready_at.isoformat()}, or add --force in an emergency"
        )
        self.record = record
        self.ready_at = ready_at


class KeyStateRefused(KeyChangeRefused):
    """The key's state does not allow this change."""


@dataclass(frozen=True)
class Skipped:
    """An algorithm ``rotate`` left alone, and why."""

    alg: str
    reason: str


@dataclass(frozen=True)
class KeyChanges:
    events: tuple[KeyEvent, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    # Retired and revoked keys still in the set, with when ``prune`` may remove them.
    kept: tuple[tuple[KeyRecord, datetime | None], ...] = ()


class KeyRotation:
    """Rotate, retire, revoke and prune the keys in a store; each call is one atomic change.

    ``store`` is a ``KeyStore``, or a folder (the files store, with ``passphrase``).
    """

    def __init__(
        self,
        store: KeyStore | Path,
        *,
        clock: Clock,
        timings: KeyTimings,
        passphrase: str | None = None,
        record: Recorder | None = None,
    ) -> None:
        self.store = FileKeyStore(store, passphrase=passphrase) if isinstance(store, Path) else store
        self.clock = clock
        self.timings = timings
        # Called with a change's events before it is written (the CLI writes the audit rows
        # there): if recording fails, nothing changes, so no key change goes unaudited.
        self.record = record

    # --- commands ------------------------------------------------------------------------
    def rotate(
        self,
        algorithms: Iterable[str] | None = None,
        *,
        force: bool = False,
        if_older_than: timedelta | None = None,
    ) -> KeyChanges:
        """Promote each algorithm's next key, retire its active key, and publish a new next key.

        Without a next key, publish one (it may sign after the lead time; ``force`` makes a
        key sign at once). A next key younger than the lead time is refused unless ``force``;
        with ``if_older_than`` (a daily cron job), such an algorithm and one whose active key
        is younger than that are skipped instead.
        """

        def change(draft: KeyDraft, skipped: list[Skipped]) -> None:
            wanted = list(algorithms) if algorithms is not None else self._algorithms_in(draft)
            for alg in wanted:
                if alg not in SUPPORTED_ALGORITHMS:
                    raise KeyChangeRefused(f"unsupported algorithm {alg!r}")
                outcome = self._rotate_one(draft, alg, force=force, if_older_than=if_older_than)
                if outcome is not None:
                    skipped.append(outcome)

        return self._change(change)

    def retire(self, kid: str) -> KeyChanges:
        """Withdraw a next key (a new one is published in its place); an active key is rotated out."""

        def change(draft: KeyDraft, _skipped: list[Skipped]) -> None:
            record = _find(draft, kid)
            if record.state == "active":
                raise KeyStateRefused(
                    f"{kid} is the active {record.alg} key; `idp keys rotate --alg {record.alg}` "
                    "retires it and promotes the next key in one step"
                )
            if record.state != "next":
                raise KeyStateRefused(f"{kid} is already {record.state}")
            draft.put(record, record.moved_to("retired", draft.now))
            draft.event("key.retired", record, previous_state="next")
            self._publish(draft, record.alg)

        return self._change(change)

    def revoke(self, kid: str) -> KeyChanges:
        """Withdraw a compromised key at once: out of the JWKS, its tokens refused, its private key destroyed.

        An active key is replaced in the same change: the next key signs at once whatever
        its age (or a new key when there is none), and a new next key is published.
        """

        def change(draft: KeyDraft, _skipped: list[Skipped]) -> None:
            record = _find(draft, kid)
            if record.state == "revoked":
                raise KeyStateRefused(f"{kid} is already revoked")
            draft.put(record, record.moved_to("revoked", draft.now))
            draft.forget(record)
            draft.event("key.revoked", record, previous_state=record.state)
            if record.state == "active":
                self._promote(draft, record.alg, forced_by="revocation")
            elif record.state == "next":
                self._publish(draft, record.alg)

        return self._change(change)

    def prune(self) -> KeyChanges:
        """Remove retired and revoked keys whose grace time is over, and their private keys."""

        def change(draft: KeyDraft, _skipped: list[Skipped]) -> None:
            for record in list(draft.records):
                if record.state not in ("retired", "revoked"):
                    continue
                leaves_at = self.timings.leaves_at(record)
                if leaves_at is None:
                    # A manifest from before retirement times were kept: the grace time starts now.
                    draft.put(record, record.moved_to(record.state, draft.now))
                    draft.backfilled = True
                elif draft.now >= leaves_at:
                    draft.drop(record)
                    draft.event("key.pruned", record, state=record.state)

        return self._change(change)

    # --- steps ---------------------------------------------------------------------------
    def _rotate_one(
        self, draft: KeyDraft, alg: str, *, force: bool, if_older_than: timedelta | None
    ) -> Skipped | None:
        active = draft.current(alg, "active")
        upcoming = draft.current(alg, "next")
        if active is not None and if_older_than is not None:
            age = draft.now - (active.activated_at or active.created_at)
            if age < if_older_than:
                return Skipped(
                    alg,
                    f"the active key {active.kid} is {describe(age)} old, "
                    f"younger than {describe(if_older_than)}",
                )
        if upcoming is None and not force:
            published = self._publish(draft, alg)
            return Skipped(
                alg,
                f"there was no next key; {published.kid} is published now and can sign "
                f"from {self.timings.ready_at(published).isoformat()}: rotate again then",
            )
        if upcoming is not None and not force:
            ready_at = self.timings.ready_at(upcoming)
            if draft.now < ready_at:
                if if_older_than is not None:
                    return Skipped(alg, f"the next key {upcoming.kid} can sign from {ready_at.isoformat()}")
                raise NextKeyTooYoung(upcoming, ready_at, self.timings.lead)
        self._promote(draft, alg, forced_by="--force" if force else "")
        return None

    def _promote(self, draft: KeyDraft, alg: str, *, forced_by: str) -> None:
        """Make the next key (or, when there is none, a new one) active; retire the active key."""
        upcoming = draft.current(alg, "next") or self._publish(draft, alg, announce=False)
        active = draft.current(alg, "active")
        if active is not None:
            draft.put(active, active.moved_to("retired", draft.now))
        draft.put(upcoming, upcoming.moved_to("active", draft.now))
        new_next = self._publish(draft, alg, announce=False)
        details = {"next": new_next.kid}
        if active is not None:
            details["retired"] = active.kid
        if forced_by:
            details["forced_by"] = forced_by
        draft.event("key.rotated", upcoming, **details)

    def _publish(self, draft: KeyDraft, alg: str, *, announce: bool = True) -> KeyRecord:
        record = draft.generate(alg)
        if announce:
            draft.event("key.published", record, can_sign_from=self.timings.ready_at(record).isoformat())
        return record

    @staticmethod
    def _algorithms_in(draft: KeyDraft) -> list[str]:
        present = {r.alg for r in draft.records if r.state in ("active", "next")} | {"RS256"}
        return [alg for alg in SUPPORTED_ALGORITHMS if alg in present]

    def _change(self, change: Callable[[KeyDraft, list[Skipped]], None]) -> KeyChanges:
        """Apply ``change`` to the set as the store has it now, under its lock; write it if all went well."""
        skipped: list[Skipped] = []
        draft = self.store.change(lambda d: change(d, skipped), clock=self.clock, record=self.record)
        kept = tuple(
            (r, self.timings.leaves_at(r)) for r in draft.records if r.state in ("retired", "revoked")
        )
        return KeyChanges(tuple(draft.events), tuple(skipped), kept)


def _find(draft: KeyDraft, kid: str) -> KeyRecord:
    record = draft.find(kid)
    if record is None:
        raise UnknownKey(kid)
    return record


def audited(session: DbSession, clock: Clock) -> Recorder:
    """A ``KeyRotation.record`` that writes each event to the audit log (flushed, not committed):
    a database that cannot take the rows stops the change before it is written. With the
    database store the change is made in this same session, so both commit together."""

    def record(events: tuple[KeyEvent, ...]) -> None:
        for event in events:
            audit(session, event.name, at=clock.now(), kid=event.kid, alg=event.alg, **event.details)
        session.flush()

    return record
