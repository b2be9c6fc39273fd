"""Ending sessions for portals: Back-Channel Logout 1.0 tokens, delivered and retried.

Delivery choice: logout tokens are POSTed right after the sign-out commits, to every portal of
the session in parallel, each POST with a short timeout and all of them together bounded
(``TokenPolicy.backchannel_timeout`` / ``backchannel_total``), so a slow or dead portal delays
the sign-out page by at most that bound. A failure is logged and audited
(``backchannel_logout.failed``). One that may pass later (a timeout, a network error, a 5xx or
a 429: 2.8 lets the OP retry) becomes a ``backchannel_retry`` row that ``idp worker`` tries
again after 1, 2, 4 … 32 minutes, each time with a fresh token; any other answer (a 4xx: the
portal refused the token) is final. A retry that runs out is audited
(``backchannel_logout.given_up``): the portal's own session timeout is then the backstop.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select

from idp.accounts.models import Account, OPSession
from idp.accounts.sessions import EndedSession
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.keys.ring import KeyRing
from idp.oauth.models import BackchannelRetry, Client
from idp.policy import BACKCHANNEL_RETRIES, TokenPolicy
from idp.tokens import new_secret

log = logging.getLogger(__name__)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"  # noqa: S105 (a JOSE typ, not a secret)


def names_session(hint_claims: Mapping[str, Any] | None, op_session: OPSession) -> bool:
    """Whether an ID token hint identifies this very session (then no confirmation is asked)."""
    if hint_claims is None:
        return False
    if isinstance(hint_claims.get("sid"), str):
        return bool(hint_claims["sid"] == op_session.sid)
    return bool(hint_claims.get("sub") == op_session.account_id)


# --- back-channel logout ---------------------------------------------------------------------
# Answers that say "not now" rather than "no": worth another try with a fresh token.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Delivery:
    client_id: str
    uri: str
    error: str | None  # None when the portal answered 2xx
    retryable: bool = False


Poster = Callable[[str, bytes, float], int]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # OIDC Back-Channel Logout 1.0 2.5: the OP does not follow redirects from the logout URI.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post_form(uri: str, body: bytes, timeout: float) -> int:
    """POST a form and return the status; 3xx, 4xx and 5xx come back as their status too."""
    if urlsplit(uri).scheme not in ("http", "https"):
        raise URLError(f"unsupported scheme in {uri!r}")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        uri,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status: int = response.status
            return status
    except HTTPError as error:
        return error.code


class BackchannelLogout:
    """Tell each portal of an ended session that it ended, with a signed logout token."""

    def __init__(
        self,
        session: DbSession,
        *,
        keys: KeyRing,
        clock: Clock,
        issuer: str,
        policy: TokenPolicy,
        poster: Poster = post_form,
    ) -> None:
        self.session = session
        self.keys = keys
        self.clock = clock
        self.issuer = issuer
        self.policy = policy
        self.poster = poster

    def logout_token(self, client: Client, *, sid: str, sub: str) -> str:
        """A logout token (OIDC Back-Channel Logout 1.0 2.4): events, sid and sub, never a nonce."""
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + int(self.policy.logout_token_life.total_seconds()),
            "jti": new_secret("lt").removeprefix("lt_")[:22],
            "sub": sub,
            "sid": sid,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        return self.keys.sign(claims, alg=client.id_token_signed_response_alg, typ=LOGOUT_TOKEN_TYPE)

    def clients_to_tell(self, client_ids: Iterable[str]) -> list[Client]:
        wanted = list(client_ids)
        if not wanted:
            return []
        clients = self.session.execute(
            select(Client).where(Client.client_id.in_(wanted), Client.backchannel_logout_uri.is_not(None))
        ).scalars()
        return [c for c in clients if c.backchannel_logout_uri]

    def tell(self, ended: Iterable[EndedSession]) -> None:
        """Tell the portals of every session in ``ended`` that it ended, and commit the audit events."""
        for each in ended:
            self.notify(each)
        self.session.commit()

    def notify(self, ended: EndedSession) -> list[Delivery]:
        """Deliver the logout tokens of ``ended`` within the time bound; audit what happened.

        Runs after the sign-out has committed; the audit events are this call's to commit.
        """
        jobs = [
            (
                c.client_id,
                str(c.backchannel_logout_uri),
                self.logout_token(c, sid=ended.sid, sub=ended.account_id),
            )
            for c in self.clients_to_tell(ended.client_ids)
        ]
        if not jobs:
            return []
        # The account may be gone (deleted by staff, idp.admin.accounts): its events then name it
        # only by sid, and a failed delivery is not retried (the retry row would name the account).
        account_id = ended.account_id if self.session.get(Account, ended.account_id) is not None else None
        timeout = self.policy.backchannel_timeout.total_seconds()
        deliveries: list[Delivery] = []
        pool = ThreadPoolExecutor(max_workers=min(8, len(jobs)), thread_name_prefix="backchannel")
        try:
            futures = {
                pool.submit(self.poster, uri, urlencode({"logout_token": token}).encode(), timeout): (
                    cid,
                    uri,
                )
                for cid, uri, token in jobs
            }
            done, _pending = wait(futures, timeout=self.policy.backchannel_total.total_seconds())
            for future, (client_id, uri) in futures.items():
                deliveries.append(_delivery(client_id, uri, future, done))
        finally:
            # Stragglers end by their own timeout; the page does not wait for them.
            pool.shutdown(wait=False, cancel_futures=True)
        for delivery in deliveries:
            self._record(delivery, account_id, ended.sid, attempt=1)
            if delivery.error is not None and delivery.retryable and account_id is not None:
                self.session.add(
                    BackchannelRetry(
                        client_id=delivery.client_id,
                        account_id=ended.account_id,
                        sid=ended.sid,
                        next_attempt_at=self.clock.now() + BACKCHANNEL_RETRIES.wait(1),
                        attempts=1,
                        last_error=delivery.error,
                    )
                )
        return deliveries

    def retry_due(self, limit: int = 100) -> tuple[int, int]:
        """Send again what is due (``idp worker``), committing after each; return (delivered, failed).

        Each row is taken in a short transaction (SKIP LOCKED on PostgreSQL, one writer at a time
        on SQLite) that moves its next attempt on by the retry's wait, at least a minute, and
        commits before the POST: no lock is held while a portal answers (``backchannel_timeout``
        at most), and no other worker takes the row meanwhile.
        """
        delivered = failed = 0
        for _ in range(limit):
            now = self.clock.now()
            retry = self.session.execute(
                select(BackchannelRetry)
                .where(BackchannelRetry.next_attempt_at <= now)
                .order_by(BackchannelRetry.next_attempt_at, BackchannelRetry.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if retry is None:
                self.session.rollback()
                break
            client = self.session.execute(
                select(Client).where(Client.client_id == retry.client_id)
            ).scalar_one_or_none()
            if client is None or not client.backchannel_logout_uri:
                self.session.delete(retry)  # the portal no longer asks to be told
                self.session.commit()
                continue
            retry.attempts += 1
            retry.next_attempt_at = now + BACKCHANNEL_RETRIES.wait(retry.attempts)
            self.session.commit()
            delivery = self._post(client, sid=retry.sid, sub=retry.account_id)
            self._record(delivery, retry.account_id, retry.sid, attempt=retry.attempts)
            if delivery.error is None:
                delivered += 1
                self.session.delete(retry)
            elif delivery.retryable and retry.attempts < BACKCHANNEL_RETRIES.attempts:
                failed += 1
                retry.last_error = delivery.error
            else:
                failed += 1
                self._give_up(retry, delivery)
            self.session.commit()
        return delivered, failed

    def _post(self, client: Client, *, sid: str, sub: str) -> Delivery:
        uri = str(client.backchannel_logout_uri)
        body = urlencode({"logout_token": self.logout_token(client, sid=sid, sub=sub)}).encode()
        try:
            status = self.poster(uri, body, self.policy.backchannel_timeout.total_seconds())
        # Any error, as in the first attempt: one bad portal must not stop the others.
        except Exception as error:
            return Delivery(client.client_id, uri, _describe(error), retryable=True)
        return _answered(client.client_id, uri, status)

    def _give_up(self, retry: BackchannelRetry, delivery: Delivery) -> None:
        log.error(
            "back-channel logout to %s given up after %d attempts: %s",
            delivery.uri,
            retry.attempts,
            delivery.error,
        )
        audit(
            self.session,
            "backchannel_logout.given_up",
            account_id=retry.account_id,
            client_id=retry.client_id,
            sid=retry.sid,
            attempts=retry.attempts,
            reason=delivery.error,
        )
        self.session.delete(retry)

    def _record(self, delivery: Delivery, account_id: str | None, sid: str, *, attempt: int) -> None:
        if delivery.error is None:
            audit(
                self.session,
                "backchannel_logout.delivered",
                account_id=account_id,
                client_id=delivery.client_id,
                sid=sid,
                attempt=attempt,
            )
            return
        log.warning("back-channel logout to %s failed: %s", delivery.uri, delivery.error)
        audit(
            self.session,
            "backchannel_logout.failed",
            account_id=account_id,
            client_id=delivery.client_id,
            sid=sid,
            attempt=attempt,
            reason=delivery.error,
        )


def _delivery(client_id: str, uri: str, future: Future[int], done: set[Future[int]]) -> Delivery:
    if future not in done:
        return Delivery(client_id, uri, "timed out", retryable=True)
    error = future.exception()
    if error is not None:
        return Delivery(client_id, uri, _describe(error), retryable=True)
    return _answered(client_id, uri, future.result())


def _answered(client_id: str, uri: str, status: int) -> Delivery:
    if 200 <= status < 300:
        return Delivery(client_id, uri, None)
    return Delivery(client_id, uri, f"HTTP {status}", retryable=status in RETRYABLE_STATUSES)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:200]
