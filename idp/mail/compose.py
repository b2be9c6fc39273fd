"""Words of the mail the provider sends, rendered from templates in the holder's language.

The web pages and the mail share the templates folder and the translation catalogues, but mail
is composed outside requests too (the worker, the CLI), so this module renders with Jinja and
Babel directly rather than through Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

PACKAGE = Path(__file__).resolve().parent.parent


class Recipient(Protocol):
    """Whom a message is for: an account (the templates read its names and dates too)."""

    @property
    def id(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def locale(self) -> str | None: ...
    @property
    def is_test_account(self) -> bool: ...


@dataclass(frozen=True)
class Composed:
    """One message's words: the subject, the plain-text body and the same body as HTML."""

    subject: str
    text: str
    html: str


class MessageComposer(Protocol):
    def compose(self, kind: str, account: Recipient, **values: Any) -> Composed:
        """Return the subject and bodies of message ``kind`` for ``account``."""
        ...


class UnknownMessageKind(ValueError):
    pass


class TemplateComposer:
    """``MessageComposer`` over ``templates/mail/<kind>.txt`` and ``templates/mail/<kind>.html``.

    The HTML templates are autoescaped, and so are the values put into translated strings
    (Jinja's newstyle gettext), so names and addresses typed by users cannot add markup; the
    ``.txt`` ones are not escaped.
    """

    def __init__(
        self,
        *,
        templates: Path = PACKAGE / "templates",
        translations: Path = PACKAGE / "translations",
        default_locale: str = "en",
        timezone: str = "UTC",
        district_name: Callable[[], str] | None = None,
    ) -> None:
        self.templates = templates
        self.translations = translations
        self.default_locale = default_locale
        # Times in mail read as the district's clocks show them (IDP_TIMEZONE), like the pages.
        self.timezone = ZoneInfo(timezone)
        self._by_locale: dict[str, tuple[Environment, NullTranslations]] = {}
        self.district_name = district_name

    def compose(self, kind: str, account: Recipient, **values: Any) -> Composed:
        locale = account.locale or self.default_locale
        environment, translations = self._for(locale)
        subject = _subject(kind, translations, values)
        district = self.district_name() if self.district_name is not None else ""
        context = {"account": account, "subject": subject, "locale": locale, "district": district, **values}
        text = environment.get_template(f"mail/{kind}.txt").render(context).strip()
        html = environment.get_template(f"mail/{kind}.html").render(context)
        if district:
            # Every message says who sends it (the HTML layout shows it at the top).
            text += f"\n\n-- \n{district}"
        return Composed(subject=subject, text=text + "\n", html=html)

    def _for(self, locale: str) -> tuple[Environment, NullTranslations]:
        found = self._by_locale.get(locale)
        if found is None:
            translations = Translations.load(str(self.translations), [locale])
            environment = Environment(
                loader=FileSystemLoader(self.templates),
                autoescape=select_autoescape(["html"]),
                extensions=["jinja2.ext.i18n"],
            )
            environment.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
            environment.filters["datetimeformat"] = partial(
                _datetime_format, locale=locale, timezone=self.timezone
            )
            found = self._by_locale[locale] = (environment, translations)
        return found


def _datetime_format(moment: datetime, format: str = "medium", *, locale: str, timezone: tzinfo) -> str:
    """Flask-Babel's filter of the same name, as the pages have it: the locale's words, the
    district's time zone (a naive time is UTC, as the database keeps it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment, format, tzinfo=timezone, locale=locale)


def _subject(kind: str, translations: NullTranslations, values: dict[str, Any]) -> str:
    _ = translations.gettext
    match kind:
        case "email_verification":
            return _("Verify your email address")
        case "email_changed":
            return _("The email address of your account was changed")
        case "password_changed":
            return _("Your password was changed")
        case "student_linked":
            return _("A student was linked to your account")
        case "password_reset":
            return _("Reset your password")
        case "student_removed":
            return _("A student was removed from your account")
        case "account_deleted":
            return _("Your account has been removed")
        case "emulation_started":
            return _("A member of the district staff viewed your account")
        case "guardian_invitation":
            return _("Your invitation to see your students in the school portals")
        case "username_reminder":
            return translations.ngettext("Your username", "Your usernames", len(values.get("usernames", ())))
    raise UnknownMessageKind(kind)
