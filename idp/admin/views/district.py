"""Console pages: district options, and "Configure Password Requirements" for the district default
and each school, with the NIST SP 800-63B-4 departures ``idp policy show`` prints."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import BooleanField, IntegerField
from wtforms.validators import InputRequired, NumberRange

from idp.accounts.district import LOCKOUT_SECONDS, LOCKOUT_THRESHOLDS, DistrictOptions
from idp.accounts.password_policy import (
    LOWEST_MIN_LENGTH,
    MAX_HISTORY,
    DepartureRule,
    PasswordRules,
    UnknownSchool,
)
from idp.accounts.passwords import MAX_PASSWORD_LENGTH
from idp.admin.district_settings import SchoolPolicy, SettingRefused
from idp.admin.roles import Permission
from idp.admin.views.common import admin_not_found, current_actor, staff_page
from idp.web.context import services

bp = Blueprint("admin_district", __name__, url_prefix="/admin")

# The district default's place among the schools' pages; school codes are the school system's,
# and "district" is what ``idp policy show`` calls the default too.
DISTRICT = "district"
MAX_AGE_DAYS = 3650


class DistrictOptionsForm(FlaskForm):  # type: ignore[misc]
    allow_password_change = BooleanField(_l("Allow portal users to change their own password"))
    allow_email_change = BooleanField(_l("Allow portal users to change their email address"))
    require_email_verification = BooleanField(
        _l("Require a verified email address before an account can sign in")
    )
    single_use_access_passwords = BooleanField(
        _l("Access Passwords are single-use: once a guardian links a student with one, it stops working")
    )
    # The bounds of ``idp district set`` (idp.accounts.district).
    lockout_threshold = IntegerField(
        _l("Failed sign-ins before an account locks"),
        validators=[
            InputRequired(_l("Give a number of failed sign-ins.")),
            NumberRange(
                *LOCKOUT_THRESHOLDS, _l("The lockout threshold must be %(min)s to %(max)s failed sign-ins.")
            ),
        ],
    )
    lockout_minutes = IntegerField(
        _l("Minutes the lock lasts"),
        validators=[
            InputRequired(_l("Give how many minutes the lock lasts.")),
            NumberRange(
                LOCKOUT_SECONDS[0] // 60,
                LOCKOUT_SECONDS[1] // 60,
                _l("The lock must last %(min)s to %(max)s minutes."),
            ),
        ],
    )

    def fill(self, options: DistrictOptions) -> None:
        """Show ``options`` in the form."""
        self.allow_password_change.data = options.allow_password_change
        self.allow_email_change.data = options.allow_email_change
        self.require_email_verification.data = options.require_email_verification
        self.single_use_access_passwords.data = options.single_use_access_passwords
        self.lockout_threshold.data = options.lockout_threshold
        self.lockout_minutes.data = _minutes(options.lockout_seconds)

    def changes(self, current: DistrictOptions) -> dict[str, Any]:
        """Return the options as submitted; the lock's length only if its minutes changed."""
        changes: dict[str, Any] = {
            "allow_password_change": self.allow_password_change.data,
            "allow_email_change": self.allow_email_change.data,
            "require_email_verification": self.require_email_verification.data,
            "single_use_access_passwords": self.single_use_access_passwords.data,
            "lockout_threshold": self.lockout_threshold.data,
        }
        # IDP_LOCKOUT_SECONDS may be no whole number of minutes: left alone unless edited here.
        if self.lockout_minutes.data != _minutes(current.lockout_seconds):
            changes["lockout_seconds"] = self.lockout_minutes.data * 60
        return changes


def _minutes(seconds: int) -> int:
    return -(-seconds // 60)


class PasswordPolicyForm(FlaskForm):  # type: ignore[misc]
    # The bounds and words of ``idp policy set`` (idp.accounts.password_policy._validate).
    min_length = IntegerField(
        _l("Minimum length"),
        validators=[
            InputRequired(_l("Give a minimum length.")),
            NumberRange(
                LOWEST_MIN_LENGTH,
                MAX_PASSWORD_LENGTH,
                _l("The minimum length must be %(min)s to %(max)s."),
            ),
        ],
    )
    require_upper_lower = BooleanField(_l("Require upper and lower case letters"))
    require_letter_number = BooleanField(_l("Require a letter and a number"))
    require_special = BooleanField(_l("Require a special character"))
    history_count = IntegerField(
        _l("Previous passwords that may not be reused"),
        validators=[
            InputRequired(_l("Give how many previous passwords to remember (0 for none).")),
            NumberRange(0, MAX_HISTORY, _l("The history must be %(min)s to %(max)s passwords.")),
        ],
    )
    max_age_days = IntegerField(
        _l("Days before a password must change (0: never)"),
        validators=[
            InputRequired(_l("Give a maximum age in days (0 for none).")),
            NumberRange(0, MAX_AGE_DAYS, _l("The maximum age must be 1 to %(max)s days (0 for none).")),
        ],
    )
    block_common = BooleanField(_l("Refuse common passwords"))
    block_context = BooleanField(_l("Refuse passwords made from the username or the district's name"))

    def fill(self, rules: PasswordRules) -> None:
        """Show ``rules`` in the form."""
        self.min_length.data = rules.min_length
        self.require_upper_lower.data = rules.require_upper_lower
        self.require_letter_number.data = rules.require_letter_number
        self.require_special.data = rules.require_special
        self.history_count.data = rules.history_count
        self.max_age_days.data = rules.max_age.days if rules.max_age else 0
        self.block_common.data = rules.block_common
        self.block_context.data = rules.block_context

    def rules(self) -> dict[str, Any]:
        return {
            "min_length": self.min_length.data,
            "require_upper_lower": self.require_upper_lower.data,
            "require_letter_number": self.require_letter_number.data,
            "require_special": self.require_special.data,
            "history_count": self.history_count.data,
            "max_age_days": self.max_age_days.data,
            "block_common": self.block_common.data,
            "block_context": self.block_context.data,
        }


class ResetPolicyForm(FlaskForm):  # type: ignore[misc]
    pass


# --- district options ----------------------------------------------------------------------
@bp.route("/district", methods=["GET", "POST"])
@staff_page(Permission.DISTRICT_OPTIONS)
def district() -> Response | str:
    settings = services().district_settings()
    actor = current_actor()
    current = settings.current(actor)
    form = DistrictOptionsForm()
    if request.method == "GET":
        form.fill(current)
        return render_template("admin/district.html", form=form)
    if not form.validate_on_submit():
        return _page(
            "admin/district.html", 400, form=form, error=_("Nothing was saved: correct the fields shown.")
        )
    try:
        settings.change_options(actor, **form.changes(current))
    except SettingRefused as refused:
        return _page("admin/district.html", 400, form=form, error=str(refused))
    flash(_("The district options were saved."))
    return redirect(url_for("admin_district.district"), code=303)


# --- password requirements -----------------------------------------------------------------
@bp.get("/policies")
@staff_page(Permission.PASSWORD_POLICIES)
def policies() -> str:
    default, schools = services().district_settings().school_policies(current_actor())
    return render_template(
        "admin/policies.html",
        default=default,
        schools=schools,
        departures=departure_lines,
        district=DISTRICT,
    )


@bp.route("/policies/<code>", methods=["GET", "POST"])
@staff_page(Permission.PASSWORD_POLICIES)
def policy(code: str) -> Response | str:
    settings = services().district_settings()
    actor = current_actor()
    school_code = None if code == DISTRICT else code
    try:
        shown = settings.policy(actor, school_code)
    except UnknownSchool:
        return admin_not_found()
    form = PasswordPolicyForm()
    if request.method == "GET":
        form.fill(shown.rules)
        return _policy_page(form, shown, code)
    if not form.validate_on_submit():
        return _policy_page(
            form, shown, code, status=400, error=_("Nothing was saved: correct the fields shown.")
        )
    try:
        settings.set_policy(actor, school_code, **form.rules())
    except SettingRefused as refused:
        return _policy_page(form, shown, code, status=400, error=str(refused))
    except UnknownSchool:
        return admin_not_found()
    flash(_("The password requirements were saved."))
    return redirect(url_for("admin_district.policy", code=code), code=303)


@bp.post("/policies/<code>/reset")
@staff_page(Permission.PASSWORD_POLICIES)
def reset_policy(code: str) -> Response:
    if code == DISTRICT or not ResetPolicyForm().validate_on_submit():
        return redirect(url_for("admin_district.policy", code=code), code=303)
    try:
        services().district_settings().reset_policy(current_actor(), code)
    except UnknownSchool:
        return admin_not_found()
    flash(_("This school now takes the district default."))
    return redirect(url_for("admin_district.policy", code=code), code=303)


def _policy_page(
    form: PasswordPolicyForm, shown: SchoolPolicy, code: str, *, status: int = 200, error: str | None = None
) -> Response:
    return _page(
        "admin/policy.html",
        status,
        form=form,
        shown=shown,
        code=code,
        district=DISTRICT,
        departures=departure_lines(shown.rules),
        error=error,
    )


def _page(template: str, status: int, **context: Any) -> Response:
    return make_response(render_template(template, **context), status)


# --- the NIST departures, worded as ``idp policy show`` words them --------------------------
def departure_lines(rules: PasswordRules) -> list[str]:
    """Word each departure of ``rules`` from NIST SP 800-63B-4, as the CLI does."""
    return [
        _("Departs from NIST SP 800-63B-4: %(what)s — %(reason)s", what=_what(d.rule, rules), reason=d.reason)
        for d in rules.departures()
    ]


def _what(rule: DepartureRule, rules: PasswordRules) -> str:
    worded: str
    if rule is DepartureRule.MIN_LENGTH:
        worded = ngettext(
            "a minimum length of %(num)d character",
            "a minimum length of %(num)d characters",
            rules.min_length,
        )
    elif rule is DepartureRule.MAX_LENGTH:
        worded = ngettext(
            "a maximum length of %(num)d character",
            "a maximum length of %(num)d characters",
            rules.max_length,
        )
    elif rule is DepartureRule.MAX_AGE:
        days = rules.max_age.days if rules.max_age else 0
        worded = ngettext("periodic expiry (after %(num)d day)", "periodic expiry (after %(num)d days)", days)
    else:
        worded = {
            DepartureRule.REQUIRE_UPPER_LOWER: _("composition rules (upper and lower case)"),
            DepartureRule.REQUIRE_LETTER_NUMBER: _("composition rules (a letter and a number)"),
            DepartureRule.REQUIRE_SPECIAL: _("composition rules (a special character)"),
            DepartureRule.BLOCK_COMMON: _("the common-password blocklist turned off"),
            DepartureRule.BLOCK_CONTEXT: _("the context-word blocklist turned off"),
        }[rule]
    return worded
