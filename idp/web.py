"""Web plumbing shared by the hosted pages: cookies, CSRF, translations, proxies, the OP session."""

from __future__ import annotations

import functools

import flask_babel
from babel import support
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response
from wtforms.i18n import messages_path

from idp.accounts.models import OPSession
from idp.accounts.service import SignInContext
from idp.extensions import babel, csrf
from idp.runtime import EXTENSION_KEY, runtime

OP_SESSION_KEY = "idp.op_session"
UI_LOCALES_KEY = "idp.ui_locales"


@functools.lru_cache(maxsize=16)
def wtforms_catalogue(locale: str) -> support.NullTranslations:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


LANGUAGE_COOKIE = "idp_lang"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600


class _RequestWTFormsCatalogue:
    """WTForms' catalogue in the current request's locale, looked up when a message is worded."""

    def ugettext(self, string: str) -> str:
        return str(wtforms_catalogue(str(flask_babel.get_locale())).ugettext(string))

    def ungettext(self, singular: str, plural: str, n: int) -> str:
        return str(wtforms_catalogue(str(flask_babel.get_locale())).ungettext(singular, plural, n))


_LAZY_WTFORMS_CATALOGUE = _RequestWTFormsCatalogue()


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

    @app.before_request
    def _wtforms_translations() -> None:
        # Flask-WTF would read WTForms' catalogue from disk once per request; keep one per locale,
        # chosen only when WTForms words a message (most requests never need the locale).
        request.wtforms_translations = _LAZY_WTFORMS_CATALOGUE  # type: ignore[attr-defined]

    @app.context_processor
    def _languages() -> dict[str, object]:
        return {"languages": settings.languages, "current_locale": select_locale()}

    @app.after_request
    def _remember_language(response: Response) -> Response:
        # A choice made with the selector (?lang=) holds for the pages and posts that follow.
        chosen = request.args.get("lang", "")
        if chosen in settings.languages and chosen != request.cookies.get(LANGUAGE_COOKIE):
            response.set_cookie(
                LANGUAGE_COOKIE, chosen, max_age=LANGUAGE_COOKIE_AGE, secure=secure, samesite="Lax"
            )
        return response

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
    chosen = request.args.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if chosen in languages:
        return chosen
    preferred: str = request.environ.get(UI_LOCALES_KEY, "")
    for tag in preferred.split():
        for candidate in (tag, tag.split("-")[0]):
            if candidate in languages:
                return candidate
    return request.accept_languages.best_match(languages) or languages[0]


def prefer_locales(ui_locales: str | None) -> None:
    """Show this request's pages in the first of ``ui_locales`` we offer (OIDC Core 3.1.2.1).

    An explicit choice (``?lang=``, the language cookie) still wins; Accept-Language comes after.
    """
    request.environ[UI_LOCALES_KEY] = ui_locales or ""
    flask_babel.refresh()  # a locale looked up earlier in this request is cached


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


def device_cookie_name() -> str:
    return "__Host-idp_device" if runtime().settings.uses_https else "idp_device"


def signin_context() -> SignInContext:
    """Return who is signing in: address, browser, and the devices its device cookie vouches for."""
    devices = runtime().devices
    trusted = devices.read(request.cookies.get(device_cookie_name())) if devices is not None else ()
    return SignInContext(ip_address=client_ip(), user_agent=user_agent(), devices=trusted)


def set_device_cookie(response: Response, account_id: str) -> None:
    """Trust this browser for ``account_id`` from now on (a fresh device id, kept with its others)."""
    devices = runtime().devices
    if devices is None:
        return
    response.set_cookie(
        device_cookie_name(),
        devices.issue(request.cookies.get(device_cookie_name()), account_id),
        max_age=int(devices.max_age.total_seconds()),
        httponly=True,
        secure=runtime().settings.uses_https,
        samesite="Lax",
        path="/",
    )


def user_agent() -> str | None:
    return request.headers.get("User-Agent")
