"""Gunicorn's access log without the secrets a URL can carry.

A reset or verification link holds its token in the path, a portal's callback its code in the
query, a logout request its ID token: gunicorn would write each into every access-log line (the
request line, the path, the query, the Referer of the next page). ``--logger-class
idp.web.access_log.RedactingLogger`` writes them with the token and every query value replaced.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

REDACTED = "…"
# Paths whose last segment is a secret (idp.accounts.views.recovery, .registration).
SECRET_SEGMENT = re.compile(r"(/(?:reset|verify)/)[^/?#\s\"]+")
QUERY_VALUE = re.compile(r"([?&][^=&#\s\"]*=)[^&#\s\"]*")
# Atoms that hold a URL (request line, path, query, Referer) or a credential.
URL_ATOMS = ("r", "U", "q", "f", "{referer}i")
SECRET_ATOMS = ("{authorization}i", "{cookie}i", "{http_authorization}e", "{http_cookie}e")


def redact_url(text: str) -> str:
    """``text`` with secret path segments and every query value replaced."""
    text = SECRET_SEGMENT.sub(lambda match: match.group(1) + REDACTED, text)
    return QUERY_VALUE.sub(lambda match: match.group(1) + REDACTED, text)


def redact_query(query: str) -> str:
    return redact_url("?" + query)[1:] if query else query


class RedactingLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in URL_ATOMS:
            value = atoms.get(name)
            if isinstance(value, str):
                atoms[name] = redact_query(value) if name == "q" else redact_url(value)
        for name in SECRET_ATOMS:
            if name in atoms:
                atoms[name] = REDACTED
        return atoms
