"""Console pages: the staff list, a change of role, a second factor reset (district admins)."""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from idp.admin.models import StaffRole
from idp.admin.roles import Permission
from idp.admin.staff_management import OwnStaffAccount, StaffChangeRefused
from idp.admin.views.common import current_actor, staff_page
from idp.web.context import services

bp = Blueprint("admin_staff", __name__, url_prefix="/admin")

ROLE_LABELS = {
    StaffRole.DISTRICT_ADMIN: _l("District admin"),
    StaffRole.SCHOOL_ADMIN: _l("School admin"),
    StaffRole.HELP_DESK: _l("Help desk"),
}


@bp.get("/staff")
@staff_page(Permission.MANAGE_STAFF)
def staff_list() -> Response:
    return _page()


@bp.post("/staff/<account_id>/role")
@staff_page(Permission.MANAGE_STAFF, sensitive=True)
def change_role(account_id: str) -> Response:
    try:
        role = StaffRole(request.form.get("role", ""))
    except ValueError:
        return _page(error=_("Choose one of the roles."), status=400)
    schools = request.form.get("schools", "")[:500].replace(",", " ").split()
    try:
        services().staff_management().change_role(current_actor(), account_id, role, schools)
    except (StaffChangeRefused, OwnStaffAccount) as refused:
        return _page(error=_("The role was not changed: %(why)s.", why=str(refused)), status=400)
    flash(_("The role was changed. The staff member signs in again."))
    return redirect(url_for("admin_staff.staff_list"), code=303)


@bp.post("/staff/<account_id>/reset-second-factor")
@staff_page(Permission.MANAGE_STAFF, sensitive=True)
def reset_second_factor(account_id: str) -> Response:
    try:
        services().staff_management().reset_second_factor(current_actor(), account_id)
    except OwnStaffAccount as refused:
        return _page(error=_("Nothing was changed: %(why)s.", why=str(refused)), status=400)
    flash(_("The authenticator and backup codes were reset. The next sign-in sets up a new one."))
    return redirect(url_for("admin_staff.staff_list"), code=303)


def _page(*, error: str | None = None, status: int = 200) -> Response:
    actor = current_actor()
    body = render_template(
        "admin/staff.html",
        members=services().staff_management().list_staff(actor),
        roles=ROLE_LABELS,
        me=actor.staff_id,
        error=error,
    )
    return make_response(body, status)
