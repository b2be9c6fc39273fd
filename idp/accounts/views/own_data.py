"""Hosted pages: a parent's own data in Account Preferences. Removing a student, changing a
relationship, the signed-in devices, downloading the data as JSON, and deleting the account.

Staff emulating the account may do none of it (``idp.admin.views.emulation``, the one check).
"""

from __future__ import annotations

import json
from typing import Any, cast

from flask import Blueprint, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, SelectField

from idp.accounts.lockout import LockedOut
from idp.accounts.models import Account
from idp.accounts.own_data import DeviceNotFound, StudentNotLinked, WrongPassword
from idp.accounts.views.forms import SignOutForm, offer_relationships
from idp.accounts.views.signin import locked_message
from idp.students.models import GuardianLink, Student
from idp.students.relationships import UnknownRelationship
from idp.web.context import current_op_session, deliver_mail_now, services, signin_context
from idp.web.cookies import clear_cookie, session_cookie_name

bp = Blueprint("own_data", __name__)


class RelationshipForm(FlaskForm):  # type: ignore[misc]
    relationship = SelectField(_l("Relationship"), choices=[], validate_choice=False)


class DeleteAccountForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(_l("Password"))


def _signed_in() -> Account | None:
    op_session = current_op_session()
    return op_session.account if op_session is not None else None


def _to_signin() -> Response:
    return redirect(url_for("accounts.signin"), code=303)


def _done(message: str, endpoint: str) -> Response:
    deliver_mail_now()
    flash(message)
    return redirect(url_for(endpoint), code=303)


def _student_not_linked() -> Response:
    body = render_template(
        "error.html", message=_("This student is not linked to your account."), error="not_found"
    )
    return make_response(body, 404)


def _full_name(student: Student) -> str:
    return f"{student.first_name} {student.last_name}"


# --- removing a student -------------------------------------------------------------------
@bp.get("/account/students/<student_id>/remove")
def confirm_remove_student(student_id: str) -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    try:
        _link, student = services().own_data().linked(current, student_id)
    except StudentNotLinked:
        return _student_not_linked()
    body = render_template(
        "account_remove_student.html", account=current, student=student, form=SignOutForm(), tab="students"
    )
    return make_response(body)


@bp.post("/account/students/<student_id>/remove")
def remove_student(student_id: str) -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    try:
        student = services().own_data().remove_student(current, student_id)
    except StudentNotLinked:
        return _student_not_linked()
    return _done(
        _("%(name)s was removed from your account.", name=_full_name(student)), "preferences.students"
    )


# --- changing a relationship ----------------------------------------------------------------
def _render_relationship(
    current: Account,
    link: GuardianLink,
    student: Student,
    form: RelationshipForm,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    offer_relationships(cast(Any, form), services().district_options().current().relationships)
    if form.relationship.data is None:
        form.relationship.data = link.relationship
    body = render_template(
        "account_relationship.html",
        account=current,
        student=student,
        link=link,
        form=form,
        error=error,
        tab="students",
    )
    return make_response(body, status)


@bp.get("/account/students/<student_id>/relationship")
def relationship(student_id: str) -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    try:
        link, student = services().own_data().linked(current, student_id)
    except StudentNotLinked:
        return _student_not_linked()
    return _render_relationship(current, link, student, RelationshipForm(formdata=None))


@bp.post("/account/students/<student_id>/relationship")
def change_relationship(student_id: str) -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = RelationshipForm()
    own_data = services().own_data()
    try:
        student = own_data.change_relationship(current, student_id, (form.relationship.data or "")[:64])
    except StudentNotLinked:
        return _student_not_linked()
    except UnknownRelationship:
        link, student = own_data.linked(current, student_id)
        message = _("Choose one of the relationships offered.")
        return _render_relationship(current, link, student, form, error=message, status=400)
    return _done(
        _("Your relationship to %(name)s was saved.", name=_full_name(student)), "preferences.students"
    )


# --- signed-in devices ----------------------------------------------------------------------
@bp.get("/account/devices")
def devices() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    return _render_devices(current)


def _render_devices(current: Account, *, error: str | None = None, status: int = 200) -> Response:
    op_session = current_op_session()
    body = render_template(
        "account_devices.html",
        account=current,
        devices=services().own_data().devices(current, current=op_session.id if op_session else None),
        form=SignOutForm(),
        error=error,
        tab="devices",
    )
    return make_response(body, status)


@bp.post("/account/devices/<device_id>/sign-out")
def sign_out_device(device_id: str) -> Response:
    current = _signed_in()
    op_session = current_op_session()
    if current is None or op_session is None:
        return _to_signin()
    try:
        services().own_data().sign_out_device(current, device_id[:64])
    except DeviceNotFound:
        return _render_devices(
            current, error=_("That device is no longer signed in to your account."), status=404
        )
    if device_id == op_session.id:
        response = make_response(render_template("signed_out.html"))
        clear_cookie(response, session_cookie_name())
        return response
    return _done(_("The device was signed out."), "own_data.devices")


@bp.post("/account/devices/sign-out-others")
def sign_out_others() -> Response:
    current = _signed_in()
    op_session = current_op_session()
    if current is None or op_session is None:
        return _to_signin()
    ended = services().own_data().sign_out_others(current, keep=op_session.id)
    if not ended:
        return _done(_("No other device was signed in."), "own_data.devices")
    return _done(_("Your other devices were signed out."), "own_data.devices")


# --- downloading the data -------------------------------------------------------------------
@bp.get("/account/data.json")
def download() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    exported = services().own_data().export(current)
    response = make_response(json.dumps(exported, ensure_ascii=False, indent=2, sort_keys=True))
    response.mimetype = "application/json"
    response.headers["Content-Disposition"] = 'attachment; filename="my-account-data.json"'
    # Personal data: neither the browser's cache nor a proxy may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- deleting the account -------------------------------------------------------------------
def _render_delete(
    current: Account, form: DeleteAccountForm, *, error: str | None = None, status: int = 200
) -> Response:
    body = render_template(
        "account_delete.html",
        account=current,
        students=services().guardianship().linked_students(current),
        form=form,
        error=error,
        tab="devices",
    )
    return make_response(body, status)


@bp.get("/account/delete")
def confirm_delete() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    return _render_delete(current, DeleteAccountForm(formdata=None))


@bp.post("/account/delete")
def delete_account() -> Response:
    current = _signed_in()
    if current is None:
        return _to_signin()
    form = DeleteAccountForm()
    try:
        services().own_data().delete_account(
            current, password=form.password.data or "", context=signin_context()
        )
    except WrongPassword:
        message = _("The password is not right. Your account was not deleted.")
        return _render_delete(current, DeleteAccountForm(formdata=None), error=message, status=400)
    except LockedOut as locked:
        return _render_delete(
            current, DeleteAccountForm(formdata=None), error=locked_message(locked), status=429
        )
    deliver_mail_now()
    response = make_response(render_template("account_deleted.html"))
    clear_cookie(response, session_cookie_name())
    return response
