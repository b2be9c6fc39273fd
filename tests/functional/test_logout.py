"""RP-Initiated Logout 1.0 at /logout and Back-Channel Logout 1.0 to the session's portals."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from idp.accounts.models import OPSession, SessionClient
from idp.audit import AuditEvent
from idp.extensions import db
from idp.oauth.models import BackchannelRetry, Client
from idp.web.context import services
from tests.conftest import AuthRequest, csrf_token, redirect_params
from tests.functional.oidc import authorize_as, redeem, sign_in
from tests.functional.tokens import audit_names, count, unique_username, verified_claims
from tests.receiver import Receiver, backchannel_receiver

POST_LOGOUT = "https://portal.example.test/"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SIGN_OUT_BUTTON = ">Sign Out</button>"


@pytest.fixture
def username(make_account) -> str:
    name = unique_username()
    make_account(username=name)
    return name


@pytest.fixture
def portal(make_client, receiver: Receiver):
    return make_client(post_logout_redirect_uris=[POST_LOGOUT], backchannel_logout_uri=receiver.url)


def signed_in_tokens(client: FlaskClient, portal: Any, username: str, **extra: str) -> dict[str, Any]:
    auth = AuthRequest(portal.client_id, extra=extra)
    code = authorize_as(client, auth, username)["code"]
    response = redeem(client, auth, code, portal.client_secret)
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def logout_url(**params: str) -> str:
    return "/logout?" + urlencode(params) if params else "/logout"


def session_count() -> int:
    return count(OPSession)


def assert_signed_out_page(response: Any) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert "You have been signed out." in response.get_data(as_text=True)


def prompt_none_error(client: FlaskClient, portal: Any) -> str | None:
    auth = AuthRequest(portal.client_id, extra={"prompt": "none"})
    response = client.get(auth.url())
    assert response.status_code == 302
    return redirect_params(response.headers["Location"]).get("error")


def confirm(client: FlaskClient, page: Any) -> Any:
    """Press "Sign out" on the confirmation page, sending back its hidden fields."""
    import re

    html = page.get_data(as_text=True)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))
    fields["csrf_token"] = csrf_token(html)
    return client.post("/logout", data=fields)


# --- sid --------------------------------------------------------------------------------------
def test_id_token_names_the_op_session_in_sid(client, portal, username):
    tokens = signed_in_tokens(client, portal, username)
    session = db.session.execute(select(OPSession)).scalar_one()
    assert verified_claims(client, tokens["id_token"])["sid"] == session.sid
    assert session.sid != session.id
    assert count(SessionClient) == 1


# --- RP-initiated logout ----------------------------------------------------------------------
def test_hint_for_this_session_signs_out_at_once_and_returns_with_state(client, portal, username):
    tokens = signed_in_tokens(client, portal, username)
    response = client.get(
        logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="st-1")
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    assert response.headers["Location"] == POST_LOGOUT + "?state=st-1"
    assert client.get_cookie("idp_session") is None
    assert session_count() == 0
    assert "op_session.ended" in audit_names()
    assert prompt_none_error(client, portal) == "login_required"


def test_without_a_hint_the_user_is_asked_first(client, portal, username):
    signed_in_tokens(client, portal, username)
    page = client.get("/logout")
    assert page.status_code == 200
    assert SIGN_OUT_BUTTON in page.get_data(as_text=True)
    assert session_count() == 1
    assert_signed_out_page(confirm(client, page))
    assert session_count() == 0
    assert prompt_none_error(client, portal) == "login_required"


def test_confirmation_keeps_the_registered_redirect_and_state(client, portal, username):
    signed_in_tokens(client, portal, username)
    page = client.get(
        logout_url(client_id=portal.client_id, post_logout_redirect_uri=POST_LOGOUT, state="s2")
    )
    assert SIGN_OUT_BUTTON in page.get_data(as_text=True)
    assert "Test Portal asked to sign you out." in page.get_data(as_text=True)
    response = confirm(client, page)
    assert response.status_code == 303
    assert response.headers["Location"] == POST_LOGOUT + "?state=s2"
    assert session_count() == 0


def test_hint_of_an_earlier_session_asks_first(client, portal, username):
    old = signed_in_tokens(client, portal, username)
    assert client.get(logout_url(id_token_hint=old["id_token"])).status_code == 200
    assert sign_in(client, username).status_code == 303  # a new session, a new sid
    page = client.get(logout_url(id_token_hint=old["id_token"]))
    assert page.status_code == 200
    assert SIGN_OUT_BUTTON in page.get_data(as_text=True)
    assert session_count() == 1


def test_an_expired_hint_is_still_a_hint(client, portal, username, clock):
    tokens = signed_in_tokens(client, portal, username)
    clock.advance(timedelta(minutes=20))  # past the ID token's 10 minutes, within the session
    response = client.get(logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT))
    assert response.status_code == 303
    assert session_count() == 0


def test_a_portal_may_post_the_logout_request(client, portal, username):
    tokens = signed_in_tokens(client, portal, username)
    response = client.post(
        "/logout", data={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": POST_LOGOUT}
    )
    assert response.status_code == 303
    assert session_count() == 0


def test_without_a_session_a_valid_redirect_happens_at_once(client, portal, username):
    tokens = signed_in_tokens(client, portal, username)
    client.delete_cookie("idp_session")
    response = client.get(
        logout_url(id_token_hint=tokens["id_token"], post_logout_redirect_uri=POST_LOGOUT, state="s")
    )
    assert response.status_code == 303
    assert response.headers["Location"] == POST_LOGOUT + "?state=s"
    assert session_count() == 1  # the cookie was gone; its session is not this browser's to end


def test_account_page_sign_out_button_still_signs_out(client, portal, username):
    signed_in_tokens(client, portal, username)
    page = client.get("/account")
    assert page.status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert_signed_out_page(response)
    assert session_count() == 0


# --- bad logout requests: the spec's error page, no redirect, nothing ended --------------------
def forged_id_token(sub: str, aud: str) -> str:
    key = RSAKey.generate_key(2048, parameters={"kid": "not-ours"})
    return jwt.encode(
        {"alg": "RS256", "kid": "not-ours"}, {"iss": "http://localhost", "sub": sub, "aud": aud}, key
    )


@pytest.mark.parametrize(
    "case",
    [
        "unregistered-redirect",
        "redirect-with-a-different-path",
        "redirect-without-client",
        "malformed-hint",
        "foreign-hint",
        "access-token-as-hint",
        "client-id-not-the-audience",
        "unknown-client",
        "repeated-parameter",
    ],
)
def test_bad_logout_requests_get_an_error_page_and_end_nothing(client, portal, make_client, username, case):
    tokens = signed_in_tokens(client, portal, username)
    other = make_client(name="Other", post_logout_redirect_uris=["https://other.example.test/"])
    queries = {
        "unregistered-redirect": {
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://evil.example.test/",
        },
        "redirect-with-a-different-path": {
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": POST_LOGOUT + "x",
        },
        "redirect-without-client": {"post_logout_redirect_uri": POST_LOGOUT},
        "malformed-hint": {"id_token_hint": "not.a.jwt", "post_logout_redirect_uri": POST_LOGOUT},
        "foreign-hint": {"id_token_hint": forged_id_token("x", portal.client_id)},
        "access-token-as-hint": {"id_token_hint": tokens["access_token"]},
        "client-id-not-the-audience": {"id_token_hint": tokens["id_token"], "client_id": other.client_id},
        "unknown-client": {"client_id": "no-such-client", "post_logout_redirect_uri": POST_LOGOUT},
    }
    if case == "repeated-parameter":
        response = client.get("/logout?state=a&state=b&id_token_hint=" + tokens["id_token"])
    else:
        response = client.get(logout_url(**queries[case]))
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "Location" not in response.headers
    assert "invalid_request" in response.get_data(as_text=True)
    assert session_count() == 1


def test_confirmation_without_a_valid_csrf_token_ends_nothing(client, portal, username):
    signed_in_tokens(client, portal, username)
    response = client.post("/logout", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert session_count() == 1


# --- back-channel logout ----------------------------------------------------------------------
def test_portal_receives_a_valid_logout_token(client, portal, username, receiver):
    tokens = signed_in_tokens(client, portal, username)
    id_claims = verified_claims(client, tokens["id_token"])
    client.get(logout_url(id_token_hint=tokens["id_token"]))
    (received,) = receiver.wait_for(1)
    assert received.path == "/backchannel-logout"
    assert received.content_type == "application/x-www-form-urlencoded"
    logout_token = received.form["logout_token"][0]
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    decoded = jwt.decode(logout_token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == "logout+jwt"
    claims = decoded.claims
    assert claims["iss"] == "http://localhost"
    assert claims["aud"] == portal.client_id
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert claims["sid"] == id_claims["sid"]
    assert claims["sub"] == id_claims["sub"]
    assert "nonce" not in claims
    assert claims["jti"] and claims["exp"] > claims["iat"]
    assert "backchannel_logout.delivered" in audit_names()


def test_only_portals_of_the_session_with_a_back_channel_uri_are_told(client, make_client, username):
    with backchannel_receiver() as told, backchannel_receiver() as not_signed_in:
        first = make_client(name="A", backchannel_logout_uri=told.url)
        quiet = make_client(name="B")  # no back-channel URI
        make_client(name="C", backchannel_logout_uri=not_signed_in.url)
        signed_in_tokens(client, first, username)
        signed_in_tokens(client, quiet, username)
        page = client.get("/logout")
        confirm(client, page)
        assert len(told.wait_for(1)) == 1
        time.sleep(0.2)
        assert not_signed_in.received == []


def test_failing_portal_is_audited_and_the_sign_out_still_completes(client, make_client, username):
    with backchannel_receiver(status=500) as broken:
        portal = make_client(backchannel_logout_uri=broken.url)
        tokens = signed_in_tokens(client, portal, username)
        response = client.get(logout_url(id_token_hint=tokens["id_token"]))
    assert_signed_out_page(response)
    assert session_count() == 0
    assert "backchannel_logout.failed" in audit_names()


def test_unreachable_portal_is_audited_and_the_sign_out_still_completes(client, make_client, username):
    portal = make_client(backchannel_logout_uri="http://127.0.0.1:9/backchannel-logout")
    tokens = signed_in_tokens(client, portal, username)
    assert_signed_out_page(client.get(logout_url(id_token_hint=tokens["id_token"])))
    assert "backchannel_logout.failed" in audit_names()


def test_slow_portal_delays_the_sign_out_page_by_the_bound_at_most(client, make_client, username):
    rt = services()
    rt.token_policy = replace(
        rt.token_policy, backchannel_timeout=timedelta(seconds=0.5), backchannel_total=timedelta(seconds=0.8)
    )
    with backchannel_receiver(delay=3.0) as slow:
        portal = make_client(backchannel_logout_uri=slow.url)
        tokens = signed_in_tokens(client, portal, username)
        started = time.monotonic()
        response = client.get(logout_url(id_token_hint=tokens["id_token"]))
        elapsed = time.monotonic() - started
    assert_signed_out_page(response)
    assert elapsed < 2.0, elapsed
    assert "backchannel_logout.failed" in audit_names()


def test_another_user_signing_in_ends_the_first_session_and_tells_its_portals(
    client, portal, make_account, username, receiver
):
    tokens = signed_in_tokens(client, portal, username)
    first_sid = verified_claims(client, tokens["id_token"])["sid"]
    second = unique_username()
    make_account(username=second)
    assert sign_in(client, second).status_code == 303
    (received,) = receiver.wait_for(1)
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    assert jwt.decode(received.form["logout_token"][0], keys, algorithms=["RS256"]).claims["sid"] == first_sid


def test_signing_in_again_keeps_the_sid_and_the_portals_of_the_session(
    client, portal, username, receiver, clock
):
    first = signed_in_tokens(client, portal, username)
    clock.advance(timedelta(minutes=5))
    again = signed_in_tokens(client, portal, username, prompt="login")
    first_claims = verified_claims(client, first["id_token"])
    again_claims = verified_claims(client, again["id_token"])
    assert again_claims["auth_time"] > first_claims["auth_time"]
    assert again_claims["sid"] == first_claims["sid"]
    assert receiver.received == []  # the same session, fresher: nobody was signed out
    client.get(logout_url(id_token_hint=again["id_token"]))
    (received,) = receiver.wait_for(1)
    assert received.form["logout_token"]


# --- sessions that end by timeout -------------------------------------------------------------
def test_a_timed_out_session_is_ended_by_the_worker_and_its_portals_told(
    app, client, portal, username, receiver, clock, settings
):
    tokens = signed_in_tokens(client, portal, username)
    sid = verified_claims(client, tokens["id_token"])["sid"]
    clock.advance(timedelta(seconds=settings.session_idle_seconds + 1))
    assert prompt_none_error(client, portal) == "login_required"  # not live, though not yet swept

    result = app.test_cli_runner().invoke(args=["mail", "worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "ended 1 timed-out session(s)" in result.output
    (received,) = receiver.wait_for(1)
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    assert jwt.decode(received.form["logout_token"][0], keys, algorithms=["RS256"]).claims["sid"] == sid
    assert session_count() == 0
    assert "op_session.timed_out" in audit_names()


def test_signing_in_after_a_timeout_starts_a_new_sid_and_tells_the_old_ones_portals(
    client, portal, username, receiver, clock, settings
):
    first = verified_claims(client, signed_in_tokens(client, portal, username)["id_token"])["sid"]
    clock.advance(timedelta(seconds=settings.session_idle_seconds + 1))

    second = verified_claims(client, signed_in_tokens(client, portal, username)["id_token"])["sid"]

    assert second != first
    (received,) = receiver.wait_for(1)
    keys = KeySet.import_key_set(client.get("/jwks.json").get_json())
    assert jwt.decode(received.form["logout_token"][0], keys, algorithms=["RS256"]).claims["sid"] == first


# --- back-channel logout: trying again ----------------------------------------------------------
def retries() -> list[BackchannelRetry]:
    db.session.rollback()
    return list(db.session.execute(select(BackchannelRetry)).scalars())


def audited(name: str) -> list[dict[str, Any]]:
    db.session.rollback()
    rows = db.session.execute(select(AuditEvent.details).where(AuditEvent.name == name)).scalars()
    return [dict(details) for details in rows]


def test_a_portal_that_was_down_is_told_by_the_worker_with_a_fresh_token(
    app, client, make_client, username, clock
):
    with backchannel_receiver(status=503) as down:
        portal = make_client(backchannel_logout_uri=down.url)
        tokens = signed_in_tokens(client, portal, username)
        assert_signed_out_page(client.get(logout_url(id_token_hint=tokens["id_token"])))
        (retry,) = retries()
        assert (retry.attempts, retry.last_error) == (1, "HTTP 503")
        assert retry.next_attempt_at == clock.now() + timedelta(minutes=1)
        assert services().backchannel().retry_due() == (0, 0)  # not due yet

        down.status = 200
        clock.advance(timedelta(minutes=1))
        result = app.test_cli_runner().invoke(args=["mail", "worker", "--once"])

        assert result.exit_code == 0, result.output
        assert "back-channel logout retries: delivered 1, failed 0" in result.output
        first, second = (r.form["logout_token"][0] for r in down.wait_for(2))
    id_claims = verified_claims(client, tokens["id_token"])
    again = verified_claims(client, second, sid=id_claims["sid"], sub=id_claims["sub"], aud=portal.client_id)
    assert again["jti"] != verified_claims(client, first)["jti"]
    assert again["iat"] == int(clock.now().timestamp())  # signed for this attempt: a portal refuses old ones
    assert retries() == []
    assert [d["attempt"] for d in audited("backchannel_logout.failed")] == [1]
    assert [d["attempt"] for d in audited("backchannel_logout.delivered")] == [2]


def test_retries_wait_longer_each_time_and_stop_after_about_an_hour(client, make_client, username, clock):
    with backchannel_receiver(status=500) as broken:
        portal = make_client(backchannel_logout_uri=broken.url)
        tokens = signed_in_tokens(client, portal, username)
        client.get(logout_url(id_token_hint=tokens["id_token"]))
        backchannel = services().backchannel()
        waits = []
        while retries():
            (retry,) = retries()
            waits.append(retry.next_attempt_at - clock.now())
            clock.advance(waits[-1] - timedelta(seconds=1))
            assert backchannel.retry_due() == (0, 0)
            clock.advance(timedelta(seconds=1))
            assert backchannel.retry_due() == (0, 1)
        assert len(broken.wait_for(7)) == 7
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32)]
    (given_up,) = audited("backchannel_logout.given_up")
    assert (given_up["attempts"], given_up["reason"]) == (7, "HTTP 500")
    assert len(audited("backchannel_logout.failed")) == 7


@pytest.mark.parametrize(("status", "retried"), [(400, False), (404, False), (429, True), (502, True)])
def test_only_answers_that_may_change_are_tried_again(client, make_client, username, status, retried):
    with backchannel_receiver(status=status) as answering:
        portal = make_client(backchannel_logout_uri=answering.url)
        tokens = signed_in_tokens(client, portal, username)
        assert_signed_out_page(client.get(logout_url(id_token_hint=tokens["id_token"])))
    assert len(retries()) == (1 if retried else 0)
    assert [d["reason"] for d in audited("backchannel_logout.failed")] == [f"HTTP {status}"]


def test_an_unreachable_portal_is_tried_again(client, make_client, username):
    portal = make_client(backchannel_logout_uri="http://127.0.0.1:9/backchannel-logout")
    tokens = signed_in_tokens(client, portal, username)
    client.get(logout_url(id_token_hint=tokens["id_token"]))
    (retry,) = retries()
    assert "ConnectionRefusedError" in retry.last_error or "URLError" in retry.last_error


def test_a_retry_for_a_portal_that_dropped_its_back_channel_uri_is_dropped(
    client, make_client, username, clock
):
    with backchannel_receiver(status=503) as down:
        portal = make_client(backchannel_logout_uri=down.url)
        tokens = signed_in_tokens(client, portal, username)
        client.get(logout_url(id_token_hint=tokens["id_token"]))
        registered = db.session.execute(
            select(Client).where(Client.client_id == portal.client_id)
        ).scalar_one()
        registered.backchannel_logout_uri = None
        db.session.commit()
        clock.advance(timedelta(minutes=1))
        assert services().backchannel().retry_due() == (0, 0)
        assert len(down.received) == 1
    assert retries() == []
