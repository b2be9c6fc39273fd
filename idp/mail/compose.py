"""Words of the mail the provider sends, rendered from templates in the holder's language."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from idp.accounts.models import Account


@dataclass(frozen=True)
class Composed:
    """One message's words: the subject, the plain-text body and the same body as HTML."""

    subject: str
    text: str
    html: str


class MessageComposer(Protocol):
    """Words a message (the web layer renders templates in the holder's language)."""

    def compose(self, kind: str, account: Account, **values: Any) -> Composed:
        """Return the subject and bodies of message ``kind`` for ``account``."""
        ...


class UnknownMessageKind(ValueError):
    pass


class TemplateComposer:
    """``MessageComposer`` over ``templates/mail/<kind>.txt`` and ``templates/mail/<kind>.html``.

    The HTML templates are autoescaped (Flask's Jinja environment escapes ``.html`` templates,
    and the i18n extension's newstyle gettext escapes the values put into translated strings),
    so names and addresses typed by users cannot add markup; the ``.txt`` ones are not escaped.
    """

    def compose(self, kind: str, account: Account, **values: Any) -> Composed:
        # Flask is imported here, not above, so that the services importing Composed and
        # MessageComposer from this module stay free of Flask.
        from flask import current_app
        from flask_babel import force_locale

        locale = account.locale or "en"
        with force_locale(locale):
            subject = _subject(kind, values)
            # The bare Jinja environment: mail is composed outside requests too (CLI, worker).
            env = current_app.jinja_env
            context = {"account": account, "subject": subject, "locale": locale, **values}
            text = env.get_template(f"mail/{kind}.txt").render(context)
            html = env.get_template(f"mail/{kind}.html").render(context)
        return Composed(subject=subject, text=text.strip() + "\n", html=html)


def _subject(kind: str, values: dict[str, Any]) -> str:
    from flask_babel import gettext as _
    from flask_babel import ngettext

    match kind:
        case "email_verification":
            subject = _("Verify your email address")
        case "email_changed":
            subject = _("The email address of your account was changed")
        case "password_changed":
            subject = _("Your password was changed")
        case "student_linked":
            subject = _("A student was linked to your account")
        case "password_reset":
            subject = _("Reset your password")
        case "username_reminder":
            subject = ngettext("Your username", "Your usernames", len(values.get("usernames", ())))
        case _:
            raise UnknownMessageKind(kind)
    return str(subject)
