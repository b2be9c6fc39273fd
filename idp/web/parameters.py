"""Request parameters as every page and endpoint sees them: without NUL.

PostgreSQL stores no NUL in text, and no field of ours holds one; a NUL in a query or form value
becomes U+FFFD when the parameters are parsed, so that each field gives its ordinary answer (an
unknown student, an invalid username) instead of a database error. Bytes that are not UTF-8 stay
percent-encoded (Werkzeug's parsing), so nothing undecodable arrives either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Request
from werkzeug.datastructures import ImmutableMultiDict, MultiDict

NUL = "\x00"
REPLACEMENT = "\ufffd"


def _without_nul(value: Any) -> Any:
    return value.replace(NUL, REPLACEMENT) if isinstance(value, str) else value


class Parameters(ImmutableMultiDict[str, Any]):
    """The parsed query and form: what Werkzeug parsed, with each NUL replaced."""

    def __init__(self, mapping: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> None:
        if mapping is None:
            super().__init__()
            return
        if isinstance(mapping, MultiDict):
            pairs: Iterable[tuple[str, Any]] = mapping.items(multi=True)
        elif isinstance(mapping, Mapping):
            pairs = mapping.items()
        else:
            pairs = mapping
        super().__init__([(_without_nul(key), _without_nul(value)) for key, value in pairs])


class ParametersRequest(Request):
    parameter_storage_class = Parameters
