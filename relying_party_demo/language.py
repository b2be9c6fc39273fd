"""The portal's language: English or Spanish, chosen as the provider chooses its own.

``?lang=`` on any page (remembered in a cookie), then the cookie, then Accept-Language. The
choice goes on to the provider as ``ui_locales``, so its pages match.
"""

from __future__ import annotations

import flask_babel
from flask import Flask, request
from flask_babel import Babel
from werkzeug.wrappers import Response

LANGUAGES = ("en", "es")
# Each language by its own name, as a reader of it looks for it.
LANGUAGE_NAMES = {"en": "English", "es": "Español"}
LANGUAGE_COOKIE = "portal_lang"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600

babel = Babel()


def init_language(app: Flask, *, secure: bool) -> None:
    app.config.update(BABEL_DEFAULT_LOCALE=LANGUAGES[0])
    babel.init_app(app, locale_selector=select_locale)
    # The locale is kept on the app context, which tests share among requests: choose afresh.
    app.before_request(flask_babel.refresh)
    app.context_processor(
        lambda: {"languages": LANGUAGES, "language_names": LANGUAGE_NAMES, "current_locale": select_locale()}
    )

    @app.after_request
    def _remember_language(response: Response) -> Response:
        chosen = request.args.get("lang", "")
        if chosen in LANGUAGES and chosen != request.cookies.get(LANGUAGE_COOKIE):
            response.set_cookie(
                LANGUAGE_COOKIE, chosen, max_age=LANGUAGE_COOKIE_AGE, secure=secure, samesite="Lax"
            )
        return response


def select_locale() -> str:
    chosen = request.args.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or LANGUAGES[0]


def current_language() -> str:
    """The language of this request's pages (sent to the provider as ``ui_locales``)."""
    return str(flask_babel.get_locale() or LANGUAGES[0])
