"""Words of the mail the provider sends, rendered from templates in the holder's language."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from idp.accounts.models import Account


class TemplateComposer:
    """``MessageComposer`` over ``templates/mail/<kind>.txt``."""

    def compose(self, kind: str, account: Account, **values: Any) -> tuple[str, str]:
        with force_locale(account.locale or "en"):
            subjects = {
                "email_verification": _("Verify your email address"),
                "email_changed": _("The email address of your account was changed"),
            }
            # The bare Jinja environment: mail is composed outside requests too (CLI, worker).
            template = current_app.jinja_env.get_template(f"mail/{kind}.txt")
            body = template.render(account=account, **values)
            return subjects[kind], body
