"""How usernames compare: NFKC, case-folded, surrounding spaces trimmed."""

from __future__ import annotations

import unicodedata

MAX_USERNAME_LENGTH = 64


def username_key(username: str) -> str:
    """Return the form under which ``username`` is unique and looked up."""
    return unicodedata.normalize("NFKC", username).casefold().strip()
