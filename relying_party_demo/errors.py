"""Error pages: what went wrong in words a parent can act on, never a traceback."""

from __future__ import annotations

import logging

import requests
from flask import Flask, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from relying_party_demo.provider import ProviderUnavailable
from relying_party_demo.web_session import current_session

log = logging.getLogger(__name__)
PROVIDER_DOWN = _l("The district sign-in service cannot be reached right now. Try again in a few minutes.")


def register(app: Flask) -> None:
    @app.errorhandler(ProviderUnavailable)
    @app.errorhandler(requests.RequestException)
    def _provider_down(error: Exception) -> tuple[str, int]:
        log.warning("provider unavailable: %s", error)
        return render_template("refused.html", message=PROVIDER_DOWN), 502

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError) -> tuple[str, int] | str:
        if current_session().timed_out:
            # The form's token died with the idle session: say that, not "reload the page".
            return render_template("timed_out.html")
        message = _("This page was open too long or came from elsewhere. Go back, reload it, and try again.")
        return render_template("refused.html", message=message), 400

    @app.errorhandler(404)
    def _not_found(error: HTTPException) -> tuple[str, int]:
        from relying_party_demo.views import frame_of

        # Inside the portal's usual frame: a signed-in parent keeps the header and its links.
        message = _("There is no such page here.")
        return render_template("not_found.html", message=message, **frame_of(current_session().identity)), 404

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> tuple[str, int]:
        return render_template("refused.html", message=error.description), error.code or 500

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[str, int]:
        log.exception("unexpected error", exc_info=error)
        return render_template("refused.html", message=_("Something went wrong on the portal.")), 500
