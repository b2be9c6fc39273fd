"""The last page a user viewed, kept in a signed cookie of its own so that it outlives the session.

After an idle timeout the session row is gone, but this browser still knows where its user
was; after the same user signs in again the portal offers that page. The cookie names the
user only by a hash of ``sub``, and only paths of the portal's own pages are accepted back.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "rp_last_page"
MAX_AGE = timedelta(days=30)
# Pages worth coming back to; never a URL of another site (the value is signed, and checked).
OFFERED_PATHS = re.compile(r"^/(help|students/[A-Za-z0-9._~%-]{1,128})$")


class LastPages:
    def __init__(self, secret_key: str) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt="relying_party_demo.last-page")

    def dump(self, sub: str, path: str) -> str | None:
        """The cookie value for ``path``, or None for a page not worth offering again."""
        if not OFFERED_PATHS.match(path):
            return None
        return self.serializer.dumps({"u": _user(sub), "p": path})

    def load(self, value: str | None, sub: str) -> str | None:
        """The path this browser's user ``sub`` viewed last, if the cookie is ours and theirs."""
        if not value:
            return None
        try:
            data = self.serializer.loads(value, max_age=int(MAX_AGE.total_seconds()))
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("u") != _user(sub):
            return None
        path = data.get("p")
        return path if isinstance(path, str) and OFFERED_PATHS.match(path) else None


def _user(sub: str) -> str:
    return hashlib.sha256(sub.encode()).hexdigest()[:32]
