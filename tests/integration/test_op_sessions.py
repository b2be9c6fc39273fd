"""OP sessions without HTTP: found by the cookie's hash, ended by idle and absolute timeouts."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from idp.accounts.models import OPSession
from idp.extensions import db
from idp.tokens import secret_hash
from idp.web.context import services


def test_session_is_found_by_its_cookie_and_stored_only_as_a_hash(app, make_account):
    account = make_account()
    started = services().sessions().start(account, ip_address="203.0.113.9", user_agent="pytest")
    db.session.commit()
    row = db.session.execute(select(OPSession)).scalar_one()
    assert row.token_hash == secret_hash(started.cookie_value)
    assert started.cookie_value not in (row.token_hash, row.id)
    assert services().sessions().find(started.cookie_value).account_id == account.id
    assert services().sessions().find(started.cookie_value + "x") is None


def test_idle_session_ends_after_idle_timeout(app, make_account, clock, settings):
    sessions = services().sessions()
    started = sessions.start(make_account(), ip_address=None, user_agent=None)
    db.session.commit()
    clock.advance(timedelta(seconds=settings.session_idle_seconds - 5))
    assert sessions.find(started.cookie_value) is not None  # activity keeps it alive
    db.session.commit()
    clock.advance(timedelta(seconds=settings.session_idle_seconds + 1))
    assert sessions.find(started.cookie_value) is None
    db.session.commit()
    # The row waits for the sweep, which ends it and names it for its portals.
    (ended,) = sessions.end_timed_out()
    db.session.commit()
    assert ended.timed_out and ended.sid == started.sid
    assert db.session.execute(select(OPSession)).first() is None


def test_the_sweep_ends_only_timed_out_sessions(app, make_account, make_client, clock, settings):
    sessions = services().sessions()
    idle = sessions.start(make_account(), ip_address=None, user_agent=None)
    portal = make_client()
    sessions.remember_client(idle.id, portal.client_id)
    db.session.commit()
    clock.advance(timedelta(seconds=settings.session_idle_seconds + 1))
    busy = sessions.start(make_account(), ip_address=None, user_agent=None)
    db.session.commit()

    (ended,) = sessions.end_timed_out()
    db.session.commit()

    assert (ended.sid, ended.client_ids) == (idle.sid, (portal.client_id,))
    assert sessions.find(busy.cookie_value) is not None
    assert sessions.end_timed_out() == []


def test_signing_in_over_a_timed_out_session_starts_afresh(app, make_account, clock, settings):
    sessions = services().sessions()
    account = make_account()
    old = sessions.start(account, ip_address=None, user_agent=None)
    db.session.commit()
    clock.advance(timedelta(seconds=settings.session_max_seconds + 1))

    ended = sessions.end(old.cookie_value)

    assert ended is not None and ended.timed_out


def test_busy_session_still_ends_at_absolute_timeout(app, make_account, clock, settings):
    sessions = services().sessions()
    started = sessions.start(make_account(), ip_address=None, user_agent=None)
    db.session.commit()
    step = timedelta(seconds=settings.session_idle_seconds // 2)
    elapsed = timedelta()
    while elapsed + step < timedelta(seconds=settings.session_max_seconds):
        clock.advance(step)
        elapsed += step
        assert sessions.find(started.cookie_value) is not None
        db.session.commit()
    clock.advance(step + timedelta(seconds=1))
    assert sessions.find(started.cookie_value) is None


def test_ended_session_is_not_found(app, make_account):
    sessions = services().sessions()
    started = sessions.start(make_account(), ip_address=None, user_agent=None)
    db.session.commit()
    sessions.end(started.cookie_value)
    db.session.commit()
    assert sessions.find(started.cookie_value) is None
