"""Pruning (idp.worker.retention) on both databases: each kind of row goes a retention time after it
stopped being usable, not a second before, and what is still in use is never touched."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp.accounts.models import Account
from idp.accounts.recovery_models import RecoveryPurpose, RecoveryToken
from idp.clock import FrozenClock
from idp.counters.models import CounterEntry
from idp.extensions import db
from idp.mail.delivery import MAX_ATTEMPTS
from idp.mail.models import OutboundEmail
from idp.oauth.models import AuthorizationCode, AuthorizationRequest, RefreshToken, RefreshTokenFamily
from idp.web.context import services
from idp.worker.retention import Pruned, Schedule, prune
from tests.conftest import RegisteredTestClient

KEEP = timedelta(days=30)
SECOND = timedelta(seconds=1)


def a_hash() -> str:
    return hashlib.sha256(secrets.token_bytes(16)).hexdigest()


@pytest.fixture
def ids(app: Flask, make_account: Callable[..., Account], make_client: Callable[..., Any]) -> tuple[str, str]:
    account = make_account()
    client: RegisteredTestClient = make_client()
    return account.id, client.client_id


def how_many(model: Any) -> int:
    count = db.session.execute(select(func.count()).select_from(model)).scalar_one()
    db.session.rollback()
    return int(count)


def add(*rows: Any) -> None:
    db.session.add_all(rows)
    db.session.commit()


def code(ids: tuple[str, str], expires_at: datetime) -> AuthorizationCode:
    account_id, client_id = ids
    return AuthorizationCode(
        code_hash=a_hash(),
        client_id=client_id,
        account_id=account_id,
        redirect_uri="https://portal.example/callback",
        scope="openid",
        auth_time=expires_at,
        created_at=expires_at - timedelta(minutes=1),
        expires_at=expires_at,
    )


def family(
    ids: tuple[str, str], expires_at: datetime, revoked_at: datetime | None = None
) -> RefreshTokenFamily:
    account_id, client_id = ids
    return RefreshTokenFamily(
        id=secrets.token_hex(16),
        client_id=client_id,
        account_id=account_id,
        scope="openid offline_access",
        auth_time=expires_at - timedelta(days=30),
        created_at=expires_at - timedelta(days=30),
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


def refresh_token(of: RefreshTokenFamily, expires_at: datetime) -> RefreshToken:
    return RefreshToken(family_id=of.id, token_hash=a_hash(), created_at=of.created_at, expires_at=expires_at)


def mail(created_at: datetime, *, sent: bool = False, attempts: int = 1) -> OutboundEmail:
    return OutboundEmail(
        purpose="test",
        to_address="dana@example.org",
        subject="Hi",
        body_text="" if sent else "words",
        created_at=created_at,
        next_attempt_at=created_at,
        attempts=attempts,
        sent_at=created_at if sent else None,
    )


def test_a_code_goes_the_retention_time_after_it_expires(ids: tuple[str, str], clock: FrozenClock):
    cutoff = clock.now() - KEEP
    add(code(ids, cutoff - SECOND), code(ids, cutoff))

    assert prune(db.session, now=clock.now(), keep=KEEP) == Pruned(authorization_codes=1)
    assert how_many(AuthorizationCode) == 1
    clock.advance(SECOND)
    assert prune(db.session, now=clock.now(), keep=KEEP).authorization_codes == 1
    assert how_many(AuthorizationCode) == 0


def test_waiting_authorization_requests_go_once_expired_for_the_retention_time(
    app: Flask, clock: FrozenClock
):
    cutoff = clock.now() - KEEP

    def request(expires_at: datetime) -> AuthorizationRequest:
        return AuthorizationRequest(client_id="c", params={}, created_at=expires_at, expires_at=expires_at)

    add(request(cutoff - SECOND), request(clock.now() + timedelta(minutes=10)))

    assert prune(db.session, now=clock.now(), keep=KEEP) == Pruned(authorization_requests=1)
    assert how_many(AuthorizationRequest) == 1


def test_an_ended_family_goes_with_its_tokens_and_a_live_one_keeps_its_current_token(
    ids: tuple[str, str], clock: FrozenClock
):
    now, cutoff = clock.now(), clock.now() - KEEP
    expired = family(ids, expires_at=cutoff - SECOND)
    revoked = family(ids, expires_at=now + KEEP, revoked_at=cutoff - SECOND)
    revoked_lately = family(ids, expires_at=now + KEEP, revoked_at=cutoff + SECOND)
    live = family(ids, expires_at=now + KEEP)
    add(expired, revoked, revoked_lately, live)
    add(
        refresh_token(expired, cutoff - SECOND),
        refresh_token(revoked, now + timedelta(days=1)),
        refresh_token(revoked_lately, now + timedelta(days=1)),
        refresh_token(live, cutoff - SECOND),  # rotated long ago, past its own end
        refresh_token(live, now + timedelta(days=14)),  # the current one
    )

    pruned = prune(db.session, now=now, keep=KEEP)

    assert pruned == Pruned(refresh_token_families=2, refresh_tokens=3)
    left = db.session.execute(select(RefreshToken.family_id)).scalars().all()
    assert sorted(left) == sorted([revoked_lately.id, live.id])
    assert how_many(RefreshTokenFamily) == 2


def test_recovery_tokens_go_the_retention_time_after_they_expire(ids: tuple[str, str], clock: FrozenClock):
    account_id, _ = ids
    cutoff = clock.now() - KEEP

    def token(expires_at: datetime, used_at: datetime | None = None) -> RecoveryToken:
        return RecoveryToken(
            token_hash=a_hash(),
            account_id=account_id,
            purpose=RecoveryPurpose.PASSWORD,
            created_at=expires_at - timedelta(minutes=30),
            expires_at=expires_at,
            used_at=used_at,
        )

    used_lately = token(clock.now() + timedelta(minutes=20), used_at=clock.now())
    add(token(cutoff - SECOND), token(cutoff - SECOND, used_at=cutoff - timedelta(minutes=5)), used_lately)

    assert prune(db.session, now=clock.now(), keep=KEEP) == Pruned(recovery_tokens=2)
    assert how_many(RecoveryToken) == 1  # a used link still says "used" until it expires


def test_finished_mail_goes_and_mail_still_being_retried_stays_however_old(app: Flask, clock: FrozenClock):
    old = clock.now() - KEEP - SECOND
    add(
        mail(old, sent=True),
        mail(old, attempts=MAX_ATTEMPTS),  # given up
        mail(old, attempts=3),  # still being retried: not finished with
        mail(clock.now() - timedelta(days=1), sent=True),
    )

    assert prune(db.session, now=clock.now(), keep=KEEP) == Pruned(mails=2)
    left = db.session.execute(select(OutboundEmail.attempts, OutboundEmail.sent_at)).all()
    db.session.rollback()
    assert sorted(attempts for attempts, _ in left) == [1, 3]


def test_counter_entries_go_once_they_count_and_lock_nothing(app: Flask, clock: FrozenClock):
    now = clock.now()
    add(
        CounterEntry(key="past window", counted=3, count_ends=now - SECOND, locked_until=None),
        CounterEntry(key="lock over", counted=0, count_ends=None, locked_until=now - SECOND),
        CounterEntry(key="counting", counted=2, count_ends=now + SECOND, locked_until=None),
        CounterEntry(key="locked", counted=0, count_ends=None, locked_until=now + SECOND),
    )

    assert prune(db.session, now=now, keep=KEEP) == Pruned(counters=2)
    left = sorted(db.session.execute(select(CounterEntry.key)).scalars())
    db.session.rollback()
    assert left == ["counting", "locked"]


def test_nothing_to_prune_changes_nothing(ids: tuple[str, str], clock: FrozenClock):
    add(code(ids, clock.now() + timedelta(minutes=1)), mail(clock.now(), sent=True))

    pruned = prune(db.session, now=clock.now(), keep=KEEP)

    assert pruned == Pruned() and pruned.total == 0
    assert how_many(AuthorizationCode) == how_many(OutboundEmail) == 1


def test_the_count_reads_as_words():
    assert Pruned(authorization_codes=2, mails=1).describe() == "authorization codes: 2, mails: 1"


def test_the_schedule_is_due_at_once_then_every_interval(clock: FrozenClock):
    hourly = Schedule(timedelta(hours=1))

    assert hourly.due(clock.now())
    clock.advance(timedelta(minutes=59, seconds=59))
    assert not hourly.due(clock.now())
    clock.advance(SECOND)
    assert hourly.due(clock.now())
    assert not hourly.due(clock.now())


def test_the_mail_worker_prunes_with_the_configured_retention(
    app: Flask, ids: tuple[str, str], clock: FrozenClock
):
    services().settings = replace(services().settings, retention_seconds=3600)
    add(code(ids, clock.now() - timedelta(hours=2)), code(ids, clock.now()))

    result = app.test_cli_runner().invoke(args=["mail", "worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "pruned authorization codes: 1" in result.output
    assert how_many(AuthorizationCode) == 1
