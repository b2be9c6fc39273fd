"""The console's account pages: Manage Parent/Student Accounts (search), the account page and its
actions, the student profile, and resetting every portal password.

Each view parses the request, calls one ``StaffAccounts`` (or search, profile, reset) method with
the signed-in actor, and words the outcome. ``staff_page`` turns ``OutOfReach`` into the console's
404 and ``NotPermitted`` into its 403; bad input is a 400 with the message on the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from idp.accounts.administration import MAX_REASON_LENGTH, TemporaryPassword
from idp.accounts.models import AccountType
from idp.accounts.views.messages import _, ngettext
from idp.admin.accounts import (
    AccountView,
    InvalidReason,
    NotPending,
    TooManyStudents,
)
from idp.admin.models import PasswordResetRun
from idp.admin.reset_all import ResetAlreadyRunning
from idp.admin.roles import Permission
from idp.admin.search import BadCursor, QueryTooLong, SearchInputError, UnknownFilter
from idp.admin.views.account_forms import (
    ReasonForm,
    SearchForm,
    TestMarkForm,
    TypeForm,
)
from idp.admin.views.common import current_actor, staff_page
from idp.web.context import deliver_mail_now, services

bp = Blueprint("admin_accounts", __name__, url_prefix="/admin")

# Rows per page of the search; the service allows up to 100.
PAGE_SIZE = 50
# The search's own parameters: any of them present means the staff member asked (Refresh, Show All).
SEARCH_PARAMETERS = ("q", "type", "status", "cursor", "all")

STATUS_LABELS = {
    "active": _l("Active"),
    "pending": _l("Pending"),
    "locked": _l("Locked"),
    "expired": _l("Expired"),
    "disabled": _l("Disabled"),
    "test": _l("Test"),
}
TYPE_LABELS = {"parent": _l("Parent"), "student": _l("Student"), "staff": _l("Staff")}


# --- dates in the district's time zone ------------------------------------------------------------
def district_zone() -> ZoneInfo:
    """Return the district's time zone (``IDP_TIMEZONE``, checked when the settings are read)."""
    return ZoneInfo(services().settings.timezone)


def local_time(value: datetime | None) -> str:
    """Return ``value`` as the district's wall-clock time, minutes shown; empty for None."""
    if value is None:
        return ""
    return value.astimezone(district_zone()).strftime("%Y-%m-%d %H:%M")


@bp.context_processor
def _page_helpers() -> dict[str, Any]:
    return {
        "local_time": local_time,
        "time_zone_note": _("Times are shown in the %(zone)s time zone.", zone=district_zone().key),
        "status_label": lambda value: STATUS_LABELS.get(str(value), str(value)),
        "type_label": lambda value: TYPE_LABELS.get(str(value), str(value)),
        "max_reason": MAX_REASON_LENGTH,
    }


# --- Manage Parent/Student Accounts ---------------------------------------------------------------
@bp.get("/accounts")
@staff_page(Permission.VIEW)
def search() -> Response:
    args = request.args
    if not any(name in args for name in SEARCH_PARAMETERS):
        return _search_page(SearchForm(), None)
    # "Show All" drops the search text and both filters.
    form = (
        SearchForm()
        if "all" in args
        else SearchForm(args.get("q", ""), args.get("type", ""), args.get("status", ""))
    )
    q, account_type, status = form.q, form.type or None, form.status or None
    try:
        page = (
            services()
            .account_search()
            .search(
                current_actor(),
                q=q,
                account_type=account_type,
                status=status,
                cursor=args.get("cursor") or None,
                limit=PAGE_SIZE,
            )
        )
    except SearchInputError as refused:
        return _search_page(form, None, error=_search_message(refused), status=400)
    # The links keep the search as asked: the next page starts after this page's last row.
    kept: dict[str, Any] = {
        name: value for name, value in (("q", q), ("type", account_type), ("status", status)) if value
    }
    next_url = url_for(".search", cursor=page.next_cursor, **kept) if page.next_cursor else None
    first_url = url_for(".search", **kept) if args.get("cursor") else None
    return _search_page(form, page.rows, next_url=next_url, first_url=first_url)


def _search_page(
    form: SearchForm,
    rows: Iterable[Any] | None,
    *,
    next_url: str | None = None,
    first_url: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    body = render_template(
        "admin/accounts.html",
        form=form,
        rows=list(rows) if rows is not None else None,
        next_url=next_url,
        first_url=first_url,
        error=error,
        may_reset_all=current_actor().may(Permission.RESET_ALL_PASSWORDS) and current_actor().whole_district,
    )
    return make_response(body, status)


def _search_message(refused: SearchInputError) -> str:
    if isinstance(refused, QueryTooLong):
        return _("The search text must be at most %(max)d characters long.", max=refused.max_length)
    if isinstance(refused, UnknownFilter):
        return _("Choose the account type and account status from the lists.")
    if isinstance(refused, BadCursor):
        return _("This page link is not valid any more. Search again.")
    return _("The search could not be understood.")


# --- the account page -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """A table of the account page: sign-ins, sessions, grants, the audit trail."""

    id: str
    title: str
    headings: tuple[str, ...]
    rows: list[tuple[str, ...]]
    empty: str


@bp.get("/accounts/<account_id>")
@staff_page(Permission.VIEW)
def account(account_id: str) -> Response:
    return render_account(account_id)


def render_account(
    account_id: str,
    *,
    error: str | None = None,
    temporary_password: TemporaryPassword | None = None,
    status: int = 200,
) -> Response:
    """Render the account page, with an action's error or a temporary password shown once."""
    actor = current_actor()
    view = services().staff_accounts().account(actor, account_id)
    expiry = view.expires_at.astimezone(district_zone()).date().isoformat() if view.expires_at else ""
    body = render_template(
        "admin/account.html",
        view=view,
        sections=_sections(view),
        can={
            "manage": actor.may(Permission.MANAGE_ACCOUNTS),
            "emulate": actor.may(Permission.EMULATE),
            "resend": actor.may(Permission.RESEND_VERIFICATION),
            "unlock": actor.may(Permission.UNLOCK),
            "temporary_password": actor.may(Permission.SET_TEMPORARY_PASSWORD),
        },
        expiry_value=expiry,
        error=error,
        temporary_password=temporary_password,
    )
    response = make_response(body, status)
    if temporary_password is not None:
        # The password is in this page only: no cache, no history copy keeps it.
        response.headers["Cache-Control"] = "no-store"
    return response


def _sections(view: AccountView) -> list[Section]:
    return [
        Section(
            "signins",
            _("Sign-in history"),
            (_("Time"), _("IP address"), _("Portal"), _("Outcome")),
            [
                (
                    local_time(s.at),
                    s.ip_address or "",
                    s.client_id or "",
                    f"{s.outcome} ({s.reason})" if s.reason else s.outcome,
                )
                for s in view.signins
            ],
            _("No sign-ins yet."),
        ),
        Section(
            "sessions",
            _("Live sessions"),
            (_("Started"), _("Last seen"), _("IP address"), _("Browser"), _("Portals")),
            [
                (
                    local_time(s.created_at),
                    local_time(s.last_seen_at),
                    s.ip_address or "",
                    (s.user_agent or "") + (f" ({_('emulated by staff')})" if s.emulated_by else ""),
                    ", ".join(s.client_ids),
                )
                for s in view.sessions
            ],
            _("No live sessions."),
        ),
        Section(
            "grants",
            _("Grants"),
            (_("Portal"), _("Scope"), _("Granted"), _("Expires")),
            [
                (g.client_name, g.scope, local_time(g.created_at), local_time(g.expires_at))
                for g in view.grants
            ],
            _("No portal holds a grant."),
        ),
        Section(
            "audit",
            _("Audit trail"),
            (_("Time"), _("Event"), _("By"), _("IP address"), _("Details")),
            [
                (
                    local_time(e.at),
                    e.name,
                    e.actor or "",
                    e.ip_address or "",
                    ", ".join(f"{k}={v}" for k, v in e.details.items() if k != "actor"),
                )
                for e in view.events
            ],
            _("No events."),
        ),
    ]


def _done(account_id: str, message: str) -> Response:
    flash(message)
    return redirect(url_for(".account", account_id=account_id), code=303)


# --- actions --------------------------------------------------------------------------------------
@bp.post("/accounts/<account_id>/disable")
@staff_page(Permission.MANAGE_ACCOUNTS)
def disable(account_id: str) -> Response:
    form = ReasonForm()
    try:
        services().staff_accounts().disable(current_actor(), account_id, form.reason.data or "")
    except InvalidReason:
        return render_account(account_id, error=_reason_message(), status=400)
    return _done(account_id, _("The account was disabled and signed out everywhere."))


@bp.post("/accounts/<account_id>/enable")
@staff_page(Permission.MANAGE_ACCOUNTS)
def enable(account_id: str) -> Response:
    changed = services().staff_accounts().enable(current_actor(), account_id)
    return _done(account_id, _("The account was enabled.") if changed else _("The account was not disabled."))


@bp.post("/accounts/<account_id>/expiry")
@staff_page(Permission.MANAGE_ACCOUNTS)
def expiry(account_id: str) -> Response:
    raw = (request.form.get("expires_on") or "").strip()
    try:
        day = date.fromisoformat(raw) if raw else None
    except ValueError:
        message = _("Enter the expiry date as year-month-day, for example 2027-06-30.")
        return render_account(account_id, error=message, status=400)
    # The account cannot sign in from the start of that day, in the district's time zone.
    at = datetime.combine(day, time.min, tzinfo=district_zone()).astimezone(UTC) if day else None
    services().staff_accounts().set_expiry(current_actor(), account_id, at)
    if at is None:
        return _done(account_id, _("The account no longer expires."))
    return _done(account_id, _("The account expires on %(day)s.", day=day.isoformat() if day else ""))


@bp.post("/accounts/<account_id>/temporary-password")
@staff_page(Permission.SET_TEMPORARY_PASSWORD)
def temporary_password(account_id: str) -> Response:
    issued = services().staff_accounts().set_temporary_password(current_actor(), account_id)
    # Shown in this response only, never flashed: the flash would keep it in the session cookie.
    return render_account(account_id, temporary_password=issued)


@bp.post("/accounts/<account_id>/unlock")
@staff_page(Permission.UNLOCK)
def unlock(account_id: str) -> Response:
    was_locked = services().staff_accounts().unlock(current_actor(), account_id)
    return _done(
        account_id, _("The account was unlocked.") if was_locked else _("The account was not locked.")
    )


@bp.post("/accounts/<account_id>/resend-verification")
@staff_page(Permission.RESEND_VERIFICATION)
def resend_verification(account_id: str) -> Response:
    try:
        sent = services().staff_accounts().resend_verification(current_actor(), account_id)
    except NotPending:
        message = _("The verification email is only resent to accounts that are still pending.")
        return render_account(account_id, error=message, status=400)
    if not sent:
        return _done(account_id, _("This is a test account: no email was sent."))
    deliver_mail_now()
    return _done(account_id, _("The verification email was sent again."))


@bp.post("/accounts/<account_id>/type")
@staff_page(Permission.MANAGE_ACCOUNTS)
def change_type(account_id: str) -> Response:
    form = TypeForm()
    try:
        new_type = AccountType(form.type.data or "")
    except ValueError:
        new_type = None
    if new_type not in (AccountType.PARENT, AccountType.STUDENT):
        return render_account(account_id, error=_("Choose Parent or Student."), status=400)
    try:
        changed = services().staff_accounts().change_type(current_actor(), account_id, new_type)
    except TooManyStudents as refused:
        message = ngettext(
            "A student account links one student; this account links %(num)d. Remove the others first.",
            "A student account links one student; this account links %(num)d. Remove the others first.",
            refused.count,
        )
        return render_account(account_id, error=message, status=400)
    if not changed:
        return _done(account_id, _("The account type is unchanged."))
    label = TYPE_LABELS[new_type.value]
    return _done(account_id, _("The account is now a %(type)s account.", type=label))


@bp.post("/accounts/<account_id>/test")
@staff_page(Permission.MANAGE_ACCOUNTS)
def test_mark(account_id: str) -> Response:
    is_test = TestMarkForm().test.data != "0"
    services().staff_accounts().mark_test(current_actor(), account_id, is_test)
    if is_test:
        return _done(account_id, _("The account is marked as a test account: it gets no email."))
    return _done(account_id, _("The account is no longer marked as a test account."))


@bp.post("/accounts/<account_id>/students/<sis_id>/remove")
@staff_page(Permission.MANAGE_ACCOUNTS)
def unlink(account_id: str, sis_id: str) -> Response:
    # A student not linked to this account, or out of reach, is StudentNotLinked: the 404.
    services().staff_accounts().unlink_student(current_actor(), account_id, sis_id)
    deliver_mail_now()
    return _done(account_id, _("The student was removed from the account, and the account holder was told."))


@bp.route("/accounts/<account_id>/delete", methods=["GET", "POST"])
@staff_page(Permission.MANAGE_ACCOUNTS, sensitive=True)
def delete(account_id: str) -> Response:
    accounts = services().staff_accounts()
    form = ReasonForm()
    if request.method == "GET":
        return _delete_page(accounts.account(current_actor(), account_id), form)
    try:
        accounts.delete_account(current_actor(), account_id, form.reason.data or "")
    except InvalidReason:
        view = accounts.account(current_actor(), account_id)
        return _delete_page(view, form, error=_reason_message(), status=400)
    deliver_mail_now()
    flash(_("The account was deleted. The account holder was told by email."))
    return redirect(url_for(".search"), code=303)


def _delete_page(
    view: AccountView, form: ReasonForm, *, error: str | None = None, status: int = 200
) -> Response:
    return make_response(
        render_template("admin/account_delete.html", view=view, form=form, error=error), status
    )


def _reason_message() -> str:
    return _("Enter a reason of at most %(max)d characters.", max=MAX_REASON_LENGTH)


# --- the student profile --------------------------------------------------------------------------
@bp.get("/students")
@staff_page(Permission.VIEW)
def student_lookup() -> Response:
    # The search page's "Open a student" box: a GET form, answered with the profile's own URL.
    sis_id = request.args.get("id", "").strip()
    if not sis_id:
        return _search_page(SearchForm(), None, error=_("Enter a student ID number."), status=400)
    return redirect(url_for(".student", sis_id=sis_id), code=303)


@bp.get("/students/<sis_id>")
@staff_page(Permission.VIEW)
def student(sis_id: str) -> Response:
    profile = services().student_profiles().student_profile(current_actor(), sis_id)
    return make_response(render_template("admin/student.html", profile=profile))


# --- reset all portal account passwords ------------------------------------------------------------
@bp.route("/reset-passwords", methods=["GET", "POST"])
@staff_page(Permission.RESET_ALL_PASSWORDS, sensitive=True)
def reset_passwords() -> Response:
    resets = services().password_resets()
    if request.method == "POST":
        try:
            run = resets.start(current_actor())
        except ResetAlreadyRunning as running:
            message = _("A reset of every password is already running. It has not finished yet.")
            count = resets.preview(current_actor())
            return _reset_page(count, running.run, error=message, status=409)
        flash(
            _(
                "The reset started: %(num)d accounts must choose a new password at their next sign-in.",
                num=run.total,
            )
        )
        return redirect(url_for(".reset_passwords"), code=303)
    return _reset_page(resets.preview(current_actor()), resets.unfinished())


def _reset_page(
    count: int, run: PasswordResetRun | None, *, error: str | None = None, status: int = 200
) -> Response:
    body = render_template("admin/reset_passwords.html", count=count, run=run, error=error)
    return make_response(body, status)
