"""The provider's Prometheus metrics, defined once; no HTTP.

Under gunicorn each worker is a process of its own: the launcher (``idp.gunicorn_conf``) sets
``PROMETHEUS_MULTIPROC_DIR`` before prometheus-client is first imported, so these counters and
histograms write to files there and one scrape of ``/metrics`` (``idp.web.metrics``) adds up
every worker. The gauges that describe shared state (the outbox, the signing keys) are computed at
scrape time from the database and the key store instead (``idp.web.metrics``): a multiprocess
gauge would need a rule for combining the workers' values, and every worker would compute the same.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address

from prometheus_client import Counter, Gauge, Histogram

# Seconds: an argon2 sign-in takes tens to hundreds of milliseconds, a token request a few.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SIGNIN_DURATION = Histogram(
    "idp_signin_duration_seconds", "Time to answer a sign-in form (POST /signin).", buckets=LATENCY_BUCKETS
)
TOKEN_DURATION = Histogram(
    "idp_token_duration_seconds", "Time to answer a token request.", buckets=LATENCY_BUCKETS
)
AUTHORIZE_DURATION = Histogram(
    "idp_authorize_duration_seconds", "Time to answer an authorization request.", buckets=LATENCY_BUCKETS
)
USERINFO_DURATION = Histogram(
    "idp_userinfo_duration_seconds", "Time to answer a UserInfo request.", buckets=LATENCY_BUCKETS
)

# outcome: "success", "failure" (wrong username or password, disabled, expired), "locked"
# (refused without a password check), "rate_limited" (429 before the form was read).
SIGNINS = Counter("idp_signins", "Sign-in forms answered, by outcome.", ["outcome"])
SIGNIN_FAILURES = Counter("idp_signin_failures", "Sign-ins refused for a wrong username or password.")
SIGNIN_LOCKED = Counter(
    "idp_signin_locked", "Sign-ins refused without a password check because the username was locked."
)
# scope: "username" or "device" (idp.accounts.lockout).
LOCKOUTS = Counter("idp_lockouts", "Usernames or devices locked after too many failures.", ["scope"])
# grant: the OAuth grant type ("authorization_code", "refresh_token", …).
TOKENS_ISSUED = Counter("idp_tokens_issued", "Access tokens issued, by grant type.", ["grant"])

# Counted by the worker (idp.worker, idp.mail): outcome "sent", "retried" (a temporary failure,
# tried again later) or "failed" (given up).
MAILS = Counter("idp_mails", "Mail delivery attempts, by outcome.", ["outcome"])
BACKCHANNEL_RETRIES = Counter(
    "idp_backchannel_retries", "Back-channel logout notifications tried again after a failure."
)
# Per process: whether its counters run on the database because Redis does not answer. A scrape
# shows the highest of the live workers' values (1 if any of them is on the fallback).
REDIS_FALLBACK_ACTIVE = Gauge(
    "idp_redis_fallback_active",
    "1 while Redis is unavailable and counters are kept in the database.",
    multiprocess_mode="livemax",
)


# Who may read metrics, the instance's (idp.web.metrics) and the worker's (idp.worker.metrics).
def may_read_metrics(
    *,
    token: str | None,
    allow: tuple[IPv4Network | IPv6Network, ...],
    authorization: str | None,
    addresses: Iterable[str | None],
) -> bool:
    """Return whether a request with this Authorization header may read /metrics: a bearer of
    ``token``, or one whose ``addresses`` (the peer's, and the client's a trusted proxy named)
    are all in ``allow``."""
    if token and authorization:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return True
    listed = [_in(address, allow) for address in addresses]
    return bool(listed) and all(listed)


def _in(text: str | None, allow: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        address = ip_address(text or "")
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allow)
