"""Discovery and JWKS answered before Flask: fixed bytes deserve no request machinery.

Both documents are bytes computed once (discovery once per app, the JWKS once per key set by
``KeyRing.public_jwks_json``). A GET or HEAD for either is answered here, with the headers the
Flask views give them (``Cache-Control``, the JWKS ``ETag`` and its 304, and the security headers
of ``idp.web``), without a request context, the limiter's hooks or a session: that per-request
work was most of their cost (bench/token_exchange.py). Anything else goes on to Flask, whose
views for the same URLs stay as the reference behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from werkzeug.http import is_resource_modified

from idp.keyring import KeyRing

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks.json"
SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]


@dataclass(frozen=True)
class Document:
    body: bytes
    cache_control: str
    etag: str | None = None


class PrecomputedDocuments:
    """WSGI middleware serving ``documents`` (path → a function returning the current bytes)."""

    def __init__(self, app: WSGIApplication, documents: dict[str, Callable[[], Document]]) -> None:
        self.app = app
        self.documents = documents

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        source = self.documents.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD")
        if source is None or method not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        document = source()
        headers = [("Cache-Control", document.cache_control), *SECURITY_HEADERS]
        if document.etag is not None:
            headers.append(("ETag", f'"{document.etag}"'))
            if not is_resource_modified(environ, etag=document.etag):
                start_response("304 Not Modified", headers)
                return [b""]
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(document.body)))]
        start_response("200 OK", headers)
        return [b"" if method == "HEAD" else document.body]


def discovery_source(body: bytes) -> Callable[[], Document]:
    document = Document(body, "public, max-age=3600")
    return lambda: document


def jwks_source(keys: Callable[[], KeyRing], max_age: int) -> Callable[[], Document]:
    """The key ring's JWKS bytes and ETag as they are now (they change with the key set)."""
    cache_control = f"public, max-age={max_age}"

    def current() -> Document:
        body, etag = keys().public_jwks_json()
        return Document(body, cache_control, etag)

    return current
