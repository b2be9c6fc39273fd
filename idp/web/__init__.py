"""HTTP plumbing shared by every page: cookies, CSRF, languages, trusted proxies, security headers,
error pages, rate limits, health and metrics."""

from __future__ import annotations

from urllib.parse import urlencode

import flask_babel
from babel import Locale, UnknownLocaleError
from flask import Flask, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from idp.extensions import babel, csrf
from idp.services import Services
from idp.web.context import services
from idp.web.parameters import ParametersRequest

UI_LOCALES_KEY = "idp.ui_locales"
LANGUAGE_COOKIE = "idp_lang"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
# Each language by its own name, as a reader of it looks for it in the selector.
LANGUAGE_NAMES = {"en": "English", "es": "Español"}


def init_web(app: Flask, built: Services) -> None:
    """Cookies scoped by host, CSRF on every form, Babel, the proxies we trust, security headers."""
    settings = built.settings
    secure = settings.uses_https
    app.request_class = ParametersRequest
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
        # Strict mode refuses a post without a Referer, which no-referrer pages never send; a
        # Referer naming another site is still refused (RefererCheckedCSRF).
        WTF_CSRF_SSL_STRICT=False,
        # The console shows WTForms' own messages ("Not a valid integer value."): they come from
        # WTForms' catalogue in the page's language, loaded only when a message is shown.
        WTF_I18N_ENABLED=True,
        BABEL_DEFAULT_LOCALE=settings.languages[0],
        # Dates and times on the pages: in the district's time zone, in the reader's language.
        BABEL_DEFAULT_TIMEZONE=settings.timezone,
    )
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    # Flask-Babel keeps the locale on the app context, which a command or a test may share among
    # requests: each request chooses afresh (the catalogues themselves stay cached).
    app.before_request(flask_babel.refresh)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        # The client's address and protocol only: the host is IDP_ISSUER's, never a header's.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=0)  # type: ignore[method-assign]
    app.context_processor(
        lambda: {
            "languages": settings.languages,
            "language_names": {code: language_name(code) for code in settings.languages},
            "current_locale": select_locale(),
            "language_href": language_href,
        }
    )
    app.after_request(_remember_language)
    app.after_request(_security_headers)
    if settings.is_production:
        hsts = f"max-age={settings.hsts_seconds}" + (
            "; includeSubDomains" if settings.hsts_include_subdomains else ""
        )
        app.after_request(lambda response: _strict_transport(response, hsts))


def select_locale() -> str:
    languages = services().settings.languages
    if not has_request_context():
        return languages[0]  # a command (idp …): the district's first language
    chosen = request.args.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if chosen in languages:
        return chosen
    preferred: str = request.environ.get(UI_LOCALES_KEY, "")
    for tag in preferred.split():
        for candidate in (tag, tag.split("-")[0]):
            if candidate in languages:
                return candidate
    return request.accept_languages.best_match(languages) or languages[0]


def language_href(code: str) -> str:
    """This page again in language ``code``: its query kept (an authorization request id, a tab)."""
    query = [(name, value) for name, value in request.args.items(multi=True) if name != "lang"]
    return "?" + urlencode([*query, ("lang", code)])


def language_name(code: str) -> str:
    """The language's name in itself ("Español"), for the selector."""
    if code in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[code]
    try:
        found = Locale.parse(code).get_display_name(code)
    except (ValueError, UnknownLocaleError):
        return code
    return found[:1].upper() + found[1:] if found else code


def prefer_locales(ui_locales: str | None) -> None:
    """Show this request's pages in the first of ``ui_locales`` we offer (OIDC Core 3.1.2.1).

    An explicit choice (``?lang=``, the language cookie) still wins; Accept-Language comes after.
    """
    request.environ[UI_LOCALES_KEY] = ui_locales or ""
    flask_babel.refresh()  # a locale looked up earlier in this request is cached


def _remember_language(response: Response) -> Response:
    # A choice made with the selector (?lang=) holds for the pages and posts that follow.
    chosen = request.args.get("lang", "")
    if chosen != request.cookies.get(LANGUAGE_COOKIE):
        remember_language(response, chosen)
    return response


def remember_language(response: Response, chosen: str) -> None:
    """Set the language cookie to ``chosen``, if it is one of the district's languages."""
    if chosen in services().settings.languages:
        response.set_cookie(
            LANGUAGE_COOKIE,
            chosen,
            max_age=LANGUAGE_COOKIE_AGE,
            secure=services().settings.uses_https,
            samesite="Lax",
        )


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


def _strict_transport(response: Response, value: str) -> Response:
    # Every answer, pages and JSON alike: a browser remembers HTTPS for the host from any of them.
    response.headers.setdefault("Strict-Transport-Security", value)
    return response
