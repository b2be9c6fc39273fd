"""Words of the mail the provider sends, rendered from templates in the holder's language.

The web pages and the mail share the templates folder and the translation catalogues, but mail
is composed outside requests too (the worker, the CLI), so this module renders with Jinja and
Babel directly rather than through Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

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
    ) -> None:
        self.templates = templates
        self.translations = translations
        self.default_locale = default_locale
        self._by_locale: dict[str, tuple[Environment, NullTranslations]] = {}

    def compose(self, kind: str, account: Recipient, **values: Any) -> Composed:
        locale = account.locale or self.default_locale
        environment, translations = self._for(locale)
        subject = _subject(kind, translations, values)
        context = {"account": account, "subject": subject, "locale": locale, **values}
        text = environment.get_template(f"mail/{kind}.txt").render(context)
        html = environment.get_template(f"mail/{kind}.html").render(context)
        return Composed(subject=subject, text=text.strip() + "\n", html=html)

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
            environment.filters["datetimeformat"] = partial(_datetime_format, locale=locale)
            found = self._by_locale[locale] = (environment, translations)
        return found


def _datetime_format(moment: datetime, format: str = "medium", *, locale: str) -> str:
    """Flask-Babel's filter of the same name, as the pages have it: the locale's words, in UTC."""
    return format_datetime(moment, format, tzinfo=UTC, locale=locale)


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
        case "username_reminder":
            return translations.ngettext("Your username", "Your usernames", len(values.get("usernames", ())))
    raise UnknownMessageKind(kind)
