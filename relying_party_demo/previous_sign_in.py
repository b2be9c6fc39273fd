"""The header's security aid: when, and from which device, this account last signed in before now.

From the ID token's (or userinfo's) ``last_login_at`` and ``last_login_device`` claims, in the
family's language and the district's time zone (``RP_TIMEZONE``). The device is the browser and
system the provider read from the user agent ("Firefox (Windows)"), never an address.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo

from babel import Locale
from babel.dates import format_date, format_time, get_datetime_format, get_timezone_name
from flask_babel import get_locale
from flask_babel import gettext as _

# The provider's label is a few words; anything longer is not one.
MAX_DEVICE_LENGTH = 64


def previous_sign_in(claims: Mapping[str, object], zone: tzinfo) -> str:
    """Return the sentence for the account's previous sign-in, in this request's language."""
    last_login_at = claims.get("last_login_at")
    if isinstance(last_login_at, bool) or not isinstance(last_login_at, int | float):
        return str(_("This is your first sign-in"))
    when = moment_text(datetime.fromtimestamp(last_login_at, zone), get_locale() or Locale("en"))
    device = claims.get("last_login_device")
    if isinstance(device, str) and device.strip() and len(device) <= MAX_DEVICE_LENGTH:
        return str(_("Previous sign-in: %(when)s from %(device)s", when=when, device=device.strip()))
    return str(_("Previous sign-in: %(when)s", when=when))


def moment_text(moment: datetime, locale: Locale) -> str:
    """Return "Monday, March 2, 2026, 8:05 AM CST" as ``locale`` writes it, in ``moment``'s zone."""
    date = format_date(moment, "full", locale=locale)
    time = f"{format_time(moment, 'short', locale=locale)} {zone_name(moment, locale)}"
    # The locale's own way of joining a date and a time ("{1}, {0}"; quotes mark literal text).
    joined = str(get_datetime_format("full", locale=locale)).replace("'", "")
    return joined.replace("{1}", date).replace("{0}", time)


def zone_name(moment: datetime, locale: Locale) -> str:
    """The zone's abbreviation where ``locale`` has one (CST, UTC), else its name (hora estándar central)."""
    short = get_timezone_name(moment, "short", locale=locale)
    # Without an abbreviation CLDR gives an offset ("-0600"), which few families read as a place.
    return str(get_timezone_name(moment, "long", locale=locale) if short[:1] in "+-" else short)
