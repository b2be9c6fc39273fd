"""The provider's own start page (``/``): where a parent who types the address lands."""

from __future__ import annotations

from flask import Blueprint, make_response, render_template
from werkzeug.wrappers import Response

from idp.web.context import current_op_session

bp = Blueprint("home", __name__)


@bp.get("/")
def home() -> Response:
    """Offer the four things a family comes here for, instead of an error page."""
    op_session = current_op_session()
    account = op_session.account if op_session is not None else None
    return make_response(render_template("home.html", account=account))
