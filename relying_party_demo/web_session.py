"""Flask's ``session`` kept server-side: the ``rp_session`` cookie names a row of the portal's database.

Authlib's pending sign-in state and Flask-WTF's CSRF secret live in the row's ``data``; who
signed in lives in its own columns (``ServerSession.identity``), where a back-channel logout
finds it. The cookie holds only a random id, and the database only its SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from flask import Flask, Request, request, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict
from werkzeug.wrappers import Response

from relying_party_demo.freshness import HeldTokens
from relying_party_demo.models import StoredSession
from relying_party_demo.sessions import Identity, SessionStore

COOKIE_NAME = "rp_session"


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """One request's view of a session row; changes are written when the response leaves."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        row: StoredSession | None = None,
        identity: Identity | None = None,
        timed_out: bool = False,
        transient: bool = False,
    ) -> None:
        def on_update(_: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(data or {}, on_update)
        self.row = row
        self.new = row is None
        self.modified = False
        self.timed_out = timed_out  # the cookie named a signed-in session that went idle
        self.transient = transient  # static files: never stored, never touched
        self._identity = identity
        self._rotate = False
        self._tokens: HeldTokens | None = None  # from the sign-in, stored with the new row

    @property
    def identity(self) -> Identity | None:
        return self._identity

    def sign_in(self, identity: Identity, tokens: HeldTokens | None = None) -> None:
        """Bind the session to ``identity`` and its ``tokens`` under a fresh id (no session fixation)."""
        self._identity = identity
        self._tokens = tokens
        self._rotate = True
        self.modified = True

    def refresh_identity(self, identity: Identity) -> None:
        """Replace the claims of the same user's session (no new id: nobody new signed in)."""
        assert self._identity is not None and identity.sub == self._identity.sub
        self._identity = identity
        self.modified = True

    def end(self) -> None:
        """Forget everything and start an empty session under a fresh id."""
        self.clear()
        self._identity = None
        self._tokens = None
        self._rotate = True
        self.modified = True

    @property
    def rotating(self) -> bool:
        return self._rotate

    @property
    def tokens_from_sign_in(self) -> HeldTokens | None:
        return self._tokens


def current_session() -> ServerSession:
    """This request's session, typed (``flask.session`` is a proxy to it)."""
    return cast(ServerSession, session)


StoreFactory = Callable[[], SessionStore]


class ServerSessionInterface(SessionInterface):
    def __init__(self, store: StoreFactory, *, static_prefix: str) -> None:
        self.store = store
        self.static_prefix = static_prefix.rstrip("/") + "/"

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        if request.path.startswith(self.static_prefix):
            return ServerSession(transient=True)
        loaded = self.store().load(request.cookies.get(self.get_cookie_name(app)))
        if loaded.row is None:
            return ServerSession(timed_out=loaded.timed_out)
        return ServerSession(dict(loaded.row.data or {}), row=loaded.row, identity=loaded.identity)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        if session.transient:
            return
        store = self.store()
        name = self.get_cookie_name(app)
        data = dict(session)
        keep = bool(data) or session.identity is not None
        if session.row is not None and (session.rotating or not keep):
            store.delete(session.row)
            session.row = None
        # A cache in between must never hand one browser's page to another.
        response.vary.add("Cookie")
        if not keep:
            # Nothing worth a row: an anonymous visit, or a session that just ended.
            if name in request.cookies:
                response.delete_cookie(name, path="/", secure=self.secure(app), samesite="Lax")
            return
        if session.row is None:
            store.prune()
            session_id, session.row = store.create(data, session.identity, session.tokens_from_sign_in)
            # No Max-Age: a browser-session cookie; the row's idle timeout decides how long it works.
            response.set_cookie(
                name, session_id, path="/", httponly=True, secure=self.secure(app), samesite="Lax"
            )
        elif session.modified:
            store.save(session.row, data, session.identity)
        else:
            store.touch(session.row)

    @staticmethod
    def secure(app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"])
