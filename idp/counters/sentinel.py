"""The Sentinel form of ``IDP_REDIS_URL``: the sentinels to ask, and the master they name.

``redis+sentinel://[[user]:password@]host:port[,host:port…]/MASTER_NAME[/db][?sentinel_password=…]``

The password in front of the hosts is the master's (and its replicas'), the one every counter
command sends; the sentinels themselves are asked without one unless ``sentinel_password`` (and
``sentinel_username``, with Redis ACLs) says otherwise. Values are percent-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
QUERY_OPTIONS = ("sentinel_password", "sentinel_username")


class InvalidSentinelURL(ValueError):
    """The Sentinel URL cannot be read; the message says which part is wrong (never the password)."""


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read a ``redis+sentinel://`` URL; raise ``InvalidSentinelURL`` naming what is wrong."""
    if not is_sentinel_url(url):
        raise InvalidSentinelURL(f"a Sentinel URL starts with {SCHEME}://")
    rest = url[len(SCHEME) + 3 :]
    rest, _, query = rest.partition("?")
    if "#" in query or "#" in rest:
        raise InvalidSentinelURL("a Sentinel URL has no #fragment")
    location, _, path = rest.partition("/")
    credentials, at, hosts = location.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_sentinel(part) for part in hosts.split(","))
    names = path.split("/") if path else []
    if not names or not names[0] or len(names) > 2:
        raise InvalidSentinelURL("a Sentinel URL names the master after the hosts: …/MASTER_NAME[/db]")
    master_name = unquote(names[0])
    db = 0
    if len(names) == 2:
        if not names[1].isdigit():
            raise InvalidSentinelURL(f"the database after the master name is a number, not {names[1]!r}")
        db = int(names[1])
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - set(QUERY_OPTIONS))
    if unknown:
        raise InvalidSentinelURL(
            f"unknown Sentinel URL option {unknown[0]!r} (known: {', '.join(QUERY_OPTIONS)})"
        )
    return SentinelURL(
        sentinels=sentinels,
        master_name=master_name,
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def _sentinel(part: str) -> tuple[str, int]:
    """Read one ``host[:port]`` (``[v6]:port`` for an IPv6 address)."""
    if part.startswith("["):
        host, bracket, after = part[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise InvalidSentinelURL(f"cannot read the sentinel address {part!r}")
        port = after[1:]
    else:
        host, _, port = part.partition(":")
    if not host:
        raise InvalidSentinelURL("a Sentinel URL lists its sentinels as host:port[,host:port…]")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidSentinelURL(f"the port of sentinel {host!r} is a number from 1 to 65535, not {port!r}")
    return host, int(port)
