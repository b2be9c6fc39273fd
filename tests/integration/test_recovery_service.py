"""The recovery rules without HTTP: who is written to, what a token is good for, single use under races."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp.accounts.recovery import (
    InvalidRecoveryLink,
    RecoveryLinkExpired,
    RecoveryService,
    ResetRefused,
    UsernameMismatch,
)
from idp.accounts.recovery_models import RecoveryRequest, RecoveryToken
from idp.clock import FrozenClock
from idp.extensions import db
from idp.mail.models import OutboundEmail
from idp.web.context import services

NEW = "an entirely new passphrase"


def rows(model: type) -> int:
    return int(db.session.execute(select(func.count()).select_from(model)).scalar_one())


def mailed_token(service: RecoveryService, username: str, email: str) -> str:
    service.ask_for_password_reset(username, email)
    db.session.commit()
    assert service.answer_requests() == 1
    body = db.session.execute(
        select(OutboundEmail.body_text)
        .where(OutboundEmail.purpose == "password_reset")
        .order_by(OutboundEmail.created_at.desc(), OutboundEmail.id)
        .limit(1)
    ).scalar_one()
    match = re.search(r"/reset/(rc_[A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


def reset(service: RecoveryService, token: str, username: str, new: str = NEW, confirm: str | None = None):
    return service.reset(
        token,
        username=username,
        new=new,
        confirm=new if confirm is None else confirm,
        context_words=[username],
    )


def test_asking_writes_one_request_and_looks_nothing_up(app: Flask, make_account):
    account = make_account()
    service = services().recovery()

    service.ask_for_password_reset(account.username, account.email)
    service.ask_for_password_reset("nobody", "nobody@example.org")
    service.ask_for_usernames("x\x00y@example.org")
    db.session.commit()

    assert rows(RecoveryRequest) == 3
    assert rows(RecoveryToken) == 0 and rows(OutboundEmail) == 0


def test_the_worker_answers_only_a_matching_pair(app: Flask, make_account):
    account = make_account(email="Dana@Example.org")
    service = services().recovery()
    service.ask_for_password_reset(account.username.upper(), " dana@example.ORG ")
    service.ask_for_password_reset(account.username, "someone@example.org")
    db.session.commit()

    assert service.answer_requests() == 1
    assert rows(RecoveryToken) == 1 and rows(RecoveryRequest) == 0


def test_a_token_is_good_once_for_its_life(app: Flask, make_account, clock: FrozenClock):
    account = make_account()
    service = services().recovery()
    token = mailed_token(service, account.username, account.email)

    done = reset(service, token, account.username)
    db.session.commit()

    assert done.account.id == account.id
    with pytest.raises(InvalidRecoveryLink):
        service.open(token)
    clock.advance(timedelta(seconds=1))
    later = mailed_token(services().recovery(), account.username, account.email)
    clock.advance(timedelta(minutes=31))
    with pytest.raises(RecoveryLinkExpired):
        service.open(later)


def test_refusals_leave_the_token_usable(app: Flask, make_account):
    account = make_account()
    other = make_account()
    service = services().recovery()
    token = mailed_token(service, account.username, account.email)

    with pytest.raises(UsernameMismatch):
        reset(service, token, other.username)
    with pytest.raises(ResetRefused) as refused:
        reset(service, token, account.username, new="short", confirm="other")
    db.session.rollback()

    assert [v.value for v in refused.value.violations] == ["too_short", "mismatch"]
    service.open(token)  # still good


@pytest.mark.commits
def test_two_submits_of_one_link_at_once_change_the_password_once(app: Flask, make_account):
    account = make_account()
    token = mailed_token(services().recovery(), account.username, account.email)
    username = account.username
    db.session.commit()
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def submit(new: str) -> None:
        with app.app_context():
            service = services().recovery()
            start.wait()
            try:
                reset(service, token, username, new=new)
                db.session.commit()
                outcomes.append("reset")
            except InvalidRecoveryLink:
                db.session.rollback()
                outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=(f"{NEW} {n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["refused", "reset"]
