"""Per-address rate limits on the pages people post to and on /token (Flask-Limiter).

The counts are the deployment's counters (``idp.counters``): Redis shared by every process, the
database's while Redis is down. Each limit reads its ``IDP_RATE_LIMIT_*`` setting at
request time; a breach answers 429 with ``Retry-After`` (``idp.web.errors``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, cast

from flask import Flask
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address
from prometheus_client import Counter

from idp.counters.limits_storage import CounterStorage
from idp.services import Services

RATE_LIMITED = Counter("idp_rate_limited", "Requests answered 429 by a per-address rate limit.", ["limit"])
LIMITER_KEY = "idp.limiter"

# Which pages are limited: endpoint -> (the IDP_RATE_LIMIT_* it obeys, a count shared between
# pages or None for the page's own, the methods counted or None for all). Each sign-in page counts
# on its own; the registration pages share one count, and so do the recovery pages.
LIMITS: dict[str, tuple[str, str | None, list[str] | None]] = {
    "accounts.signin": ("signin", None, ["POST"]),
    "password_change.change_password": ("signin", None, ["POST"]),
    "admin.signin": ("signin", None, ["POST"]),
    "admin.signin_code": ("signin", None, ["POST"]),
    "admin.change_password": ("signin", None, ["POST"]),
    "admin.reauth": ("signin", None, ["POST"]),
    "registration.register": ("register", "register", ["POST"]),
    "registration.resend": ("register", "register", ["POST"]),
    "preferences.resend_verification": ("register", "register", ["POST"]),
    "preferences.add_student": ("register", "register", ["POST"]),
    "invitations.create_account": ("register", "register", ["POST"]),
    "invitations.accept": ("register", "register", ["POST"]),
    "recovery.forgot_password": ("recovery", "recovery", ["POST"]),
    "recovery.forgot_username": ("recovery", "recovery", ["POST"]),
    "recovery.reset": ("recovery", "recovery", ["POST"]),
    "oauth.token": ("token", None, None),
}


def init_rate_limits(app: Flask, services: Services) -> None:
    """Give each limited page of ``app`` its limit (after the blueprints are registered)."""
    # Flask-Limiter keeps its storage on the Limiter: one per app.
    limiter = Limiter(
        get_remote_address,  # the client once ProxyFix (IDP_TRUSTED_PROXIES) has run
        app=app,
        storage_uri=f"{CounterStorage.STORAGE_SCHEME[0]}://",
        storage_options=cast(
            dict[str, Any],
            {"counters": services.counters.store, "prefix": services.settings.redis_key_prefix},
        ),
        strategy="fixed-window",
        headers_enabled=False,
        on_breach=_count_breach,
    )
    for endpoint, (setting, shared, methods) in LIMITS.items():
        rate = _setting(services, setting)
        decorate = (
            limiter.shared_limit(rate, scope=shared, methods=methods)
            if shared
            else limiter.limit(rate, methods=methods)
        )
        app.view_functions[endpoint] = cast(Any, decorate(app.view_functions[endpoint]))
    app.extensions[LIMITER_KEY] = limiter


def retry_after_seconds(app: Flask) -> int | None:
    """The seconds until this request's breached limit resets, if it breached one."""
    breached: RequestLimit | None = app.extensions[LIMITER_KEY].current_limit
    if breached is None or not breached.breached:
        return None
    return max(1, math.ceil(breached.window[0] - time.time()))


def _setting(services: Services, name: str) -> Callable[[], str]:
    return lambda: str(getattr(services.settings, f"rate_limit_{name}"))


def _count_breach(limit: RequestLimit) -> None:
    RATE_LIMITED.labels(limit=limit.request_args[-1]).inc()
