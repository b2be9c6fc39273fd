"""The provider's pages name schools by their names, not their codes."""

from __future__ import annotations

import html
from collections.abc import Callable

from flask.testing import FlaskClient

from idp.accounts.models import Account
from idp.extensions import db
from idp.web.context import services

StaffClient = Callable[..., tuple[FlaskClient, Account]]


def test_the_staff_page_names_each_school_admins_schools(
    staff_client: StaffClient, make_staff: Callable[..., Account]
):
    schools = services().schools()
    schools.create(code="LES", name="Lincoln Elementary School")
    schools.create(code="RHS", name="Roosevelt High School")
    db.session.commit()
    helper = make_staff("school-admin", ["RHS", "LES"])
    client, _ = staff_client()

    page = html.unescape(client.get("/admin/staff").get_data(as_text=True))

    row = page[page.index(f'id="staff-{helper.id}"') :]
    row = row[: row.index("</tr>")]
    assert "Lincoln Elementary School (LES), Roosevelt High School (RHS)" in row
    assert 'value="LES RHS"' in row  # the form still takes codes
