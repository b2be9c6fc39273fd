"""Ending sessions for portals: RP-Initiated Logout 1.0 requests and Back-Channel Logout 1.0 tokens.

Delivery choice: logout tokens are POSTed right after the sign-out commits, to every portal of
the session in parallel, each POST with a short timeout and all of them together bounded
(``TokenPolicy.backchannel_timeout`` / ``backchannel_total``), so a slow or dead portal delays
the sign-out page by at most that bound. A failure is logged and audited
(``backchannel_logout.failed``). One that may pass later (a timeout, a network error, a 5xx or
a 429: 2.8 lets the OP retry) becomes a ``backchannel_retry`` row that ``idp mail worker`` tries
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
from datetime import timedelta
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select

from idp.accounts.models import OPSession
from idp.accounts.sessions import EndedSession
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.keyring import KeyRing
from idp.oauth.id_tokens import IdTokenHint, InvalidIdTokenHint, read_id_token_hint
from idp.oauth.models import BackchannelRetry, Client
from idp.policy import TokenPolicy
from idp.tokens import new_secret

log = logging.getLogger(__name__)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"  # noqa: S105 (a JOSE typ, not a secret)
LOGOUT_PARAMETERS = (
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "ui_locales",
    "logout_hint",
)
MAX_PARAMETER_LENGTH = 2000


class InvalidLogoutRequest(ValueError):
    """The logout request is malformed; no redirect may follow (RP-Initiated Logout 1.0 4).

    ``reason`` is one of ``REASONS``, for the page to explain in the user's language.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


REASONS = ("malformed", "id_token_hint", "client", "redirect_uri")


@dataclass(frozen=True)
class LogoutRequest:
    client: Client | None
    hint: IdTokenHint | None
    # The registered post-logout URI with ``state`` added, or None when no redirect may happen.
    redirect_to: str | None
    post_logout_redirect_uri: str | None
    state: str | None
    ui_locales: str | None

    def names_session(self, op_session: OPSession) -> bool:
        """Whether the hint identifies this very session (then no confirmation is asked)."""
        if self.hint is None:
            return False
        if self.hint.sid is not None:
            return self.hint.sid == op_session.sid
        return self.hint.sub == op_session.account_id


def read_logout_request(
    values: Mapping[str, str],
    *,
    keys: KeyRing,
    issuer: str,
    find_client: Callable[[str], Client | None],
    multi: Callable[[str], int],
) -> LogoutRequest:
    """Validate an end-session request's parameters (GET query or POST form)."""
    for name in LOGOUT_PARAMETERS:
        if multi(name) > 1:
            raise InvalidLogoutRequest("malformed", f"The parameter {name} was sent more than once.")
        value = values.get(name)
        if value is not None and (len(value) > MAX_PARAMETER_LENGTH * 8 or "\x00" in value):
            raise InvalidLogoutRequest("malformed", f"The parameter {name} is not valid.")
    hint = None
    if values.get("id_token_hint"):
        try:
            hint = read_id_token_hint(values["id_token_hint"], keys=keys, issuer=issuer)
        except InvalidIdTokenHint as error:
            raise InvalidLogoutRequest("id_token_hint", str(error)) from None
    client = None
    client_id = values.get("client_id")
    if client_id:
        client = find_client(client_id)
        if client is None:
            raise InvalidLogoutRequest("client", "The client_id is not a registered client.")
        # RP-Initiated Logout 1.0 2: client_id and the hint's audience must agree.
        if hint is not None and client_id not in hint.audiences:
            raise InvalidLogoutRequest("client", "The client_id is not the audience of the id_token_hint.")
    elif hint is not None and len(hint.audiences) == 1:
        client = find_client(hint.audiences[0])
    uri = values.get("post_logout_redirect_uri") or None
    state = values.get("state") or None
    redirect_to = None
    if uri is not None:
        if client is None:
            raise InvalidLogoutRequest(
                "redirect_uri", "A post_logout_redirect_uri needs a client_id or an id_token_hint."
            )
        # RP-Initiated Logout 1.0 3: an exact match of a registered value, or no redirect at all.
        if uri not in client.post_logout_redirect_uris:
            raise InvalidLogoutRequest(
                "redirect_uri", "The post_logout_redirect_uri is not registered for this client."
            )
        redirect_to = _with_query(uri, {"state": state} if state else {})
    return LogoutRequest(
        client=client,
        hint=hint,
        redirect_to=redirect_to,
        post_logout_redirect_uri=uri,
        state=state,
        ui_locales=values.get("ui_locales") or None,
    )


def _with_query(uri: str, params: dict[str, str]) -> str:
    if not params:
        return uri
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return parts._replace(query=query).geturl()


# --- back-channel logout ---------------------------------------------------------------------
# The waits before each retry: about an hour in all, beyond any portal's idle timeout we know.
RETRY_WAITS = tuple(timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32))
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
            self._record(delivery, ended.account_id, ended.sid, attempt=1)
            if delivery.error is not None and delivery.retryable:
                self.session.add(
                    BackchannelRetry(
                        client_id=delivery.client_id,
                        account_id=ended.account_id,
                        sid=ended.sid,
                        next_attempt_at=self.clock.now() + RETRY_WAITS[0],
                        attempts=1,
                        last_error=delivery.error,
                    )
                )
        return deliveries

    def retry_due(self, limit: int = 100) -> tuple[int, int]:
        """Send again what is due (``idp mail worker``), committing after each; return (delivered, failed).

        SKIP LOCKED lets several workers share the rows on PostgreSQL; each POST waits at most
        ``backchannel_timeout``, so a row is held no longer than that.
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
            delivery = self._post(client, sid=retry.sid, sub=retry.account_id)
            retry.attempts += 1
            self._record(delivery, retry.account_id, retry.sid, attempt=retry.attempts)
            if delivery.error is None:
                delivered += 1
                self.session.delete(retry)
            elif delivery.retryable and retry.attempts <= len(RETRY_WAITS):
                failed += 1
                retry.last_error = delivery.error
                retry.next_attempt_at = now + RETRY_WAITS[retry.attempts - 1]
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

    def _record(self, delivery: Delivery, account_id: str, sid: str, *, attempt: int) -> None:
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
