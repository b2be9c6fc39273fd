"""Extension objects, created once and bound to the app by the ``init_*`` functions."""

from __future__ import annotations

from typing import Any

from flask_babel import Babel
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from flask_wtf.csrf import CSRFProtect

from idp.db import Base


class Session(FlaskSQLAlchemySession):
    """Flask-SQLAlchemy's session, except that a connection given as ``bind`` is used.

    Flask-SQLAlchemy picks the app's engine whatever the session was bound to; the tests bind
    it to a connection whose transaction they roll back (a SAVEPOINT per test).
    """

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kwargs: Any) -> Any:
        return bind or self.bind or super().get_bind(mapper, clause, **kwargs)


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False, "class_": Session})
migrate = Migrate()
csrf = CSRFProtect()
babel = Babel()
