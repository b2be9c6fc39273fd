"""Web plumbing shared by the hosted pages: cookies, CSRF, translations, proxies, the OP session."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from idp.accounts.models import OPSession
from idp.extensions import babel, csrf
from idp.runtime import EXTENSION_KEY, runtime

OP_SESSION_KEY = "idp.op_session"


def init_web(app: Flask) -> None:
    """Cookies scoped by host, CSRF on every form, Babel, and the proxies we trust."""
    settings = app.extensions[EXTENSION_KEY].settings
    secure = settings.uses_https
    # Flask's signed cookie only carries the CSRF secret; the OP session is a server-side row.
    app.config.update(
        SESSION_COOKIE_NAME="__Host-idp_form" if secure else "idp_form",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=settings.max_form_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_form_bytes,
        MAX_FORM_PARTS=100,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=secure,
        BABEL_DEFAULT_LOCALE=settings.languages[0],
    )
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    @app.context_processor
    def _languages() -> dict[str, object]:
        return {"languages": settings.languages, "current_locale": select_locale()}

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html":
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; frame-ancestors 'none'; form-action 'self' http: https:",
            )
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def select_locale() -> str:
    languages = runtime().settings.languages
    chosen = request.args.get("lang") or request.cookies.get("idp_lang")
    if chosen in languages:
        return chosen
    return request.accept_languages.best_match(languages) or languages[0]


def session_cookie_name() -> str:
    return "__Host-idp_session" if runtime().settings.uses_https else "idp_session"


def current_op_session() -> OPSession | None:
    """Return the browser's live OP session, looked up once per request."""
    # Cached on the request, not on ``g``: an app context may outlive one request.
    if OP_SESSION_KEY not in request.environ:
        found = runtime().sessions().find(request.cookies.get(session_cookie_name()))
        request.environ[OP_SESSION_KEY] = found
    cached: OPSession | None = request.environ[OP_SESSION_KEY]
    return cached


def set_session_cookie(response: Response, value: str) -> None:
    response.set_cookie(
        session_cookie_name(),
        value,
        httponly=True,
        secure=runtime().settings.uses_https,
        samesite="Lax",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(
        session_cookie_name(), path="/", secure=runtime().settings.uses_https, samesite="Lax"
    )


def client_ip() -> str | None:
    return request.remote_addr


def user_agent() -> str | None:
    return request.headers.get("User-Agent")
