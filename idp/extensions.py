"""Extension objects, created once and bound to the app by the ``init_*`` functions."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask_babel import Babel
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from flask_wtf.csrf import CSRFProtect, same_origin

from idp.db import Base


class Session(FlaskSQLAlchemySession):
    """Flask-SQLAlchemy's session, except that a connection given as ``bind`` is used.

    Flask-SQLAlchemy picks the app's engine whatever the session was bound to; the tests bind
    it to a connection whose transaction they roll back (a SAVEPOINT per test).
    """

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kwargs: Any) -> Any:
        return bind or self.bind or super().get_bind(mapper, clause, **kwargs)


class RefererCheckedCSRF(CSRFProtect):  # type: ignore[misc]
    """Flask-WTF's token check, and a Referer naming another site refused over https.

    Flask-WTF's strict mode (off: WTF_CSRF_SSL_STRICT) also refuses a post without a Referer, yet
    every page says ``Referrer-Policy: no-referrer``, so browsers send none: a missing one is
    allowed, the form's token against the signed ``__Host-`` cookie guarding the post.
    """

    def protect(self, apply_exemptions: bool = False) -> None:
        super().protect(apply_exemptions)
        if not g.get("csrf_valid"):  # not checked: a GET, or a view exempt from the check
            return
        referrer = request.referrer
        if request.is_secure and referrer and not same_origin(referrer, f"https://{request.host}/"):
            self._error_response("The referrer does not match the host.")


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False, "class_": Session})
migrate = Migrate()
csrf = RefererCheckedCSRF()
babel = Babel()
