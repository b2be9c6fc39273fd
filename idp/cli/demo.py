"""``idp demo seed``: two schools, a handful of students, a demo parent, the demo portal's client."""

from __future__ import annotations

from dataclasses import dataclass

import click

from idp.accounts.models import AccountType
from idp.admin.models import StaffRole
from idp.cli.common import fail, services
from idp.oauth.clients import ClientSpec, InvalidClientSettings
from idp.oauth.scopes import DEFAULT_CLIENT_SCOPE
from idp.services import Services

DEFAULT_RP_BASE_URL = "http://127.0.0.1:5001"
DEMO_CLIENT_ID = "demo-portal"
DEMO_USERNAME = "demo.parent"
# Long enough for the NIST default policy (15 characters); printed by the seed, never secret.
DEMO_PASSWORD = "maple-river-lunchbox-42"  # noqa: S105
DEMO_ADMIN = "demo.admin"


@dataclass(frozen=True)
class DemoStudent:
    sis_id: str
    first_name: str
    last_name: str
    school: str
    grade: str
    access_id: str
    access_password: str
    relationship: str | None  # linked to the demo parent when set


DEMO_SCHOOLS = {"LES": "Lincoln Elementary School", "WMS": "Washington Middle School"}
DEMO_STUDENTS = (
    DemoStudent("100234", "Zoe", "Rivera", "WMS", "7", "RIVE-ZOE-7721", "orchid-42", "Mother"),
    DemoStudent("100235", "Adam", "Rivera", "LES", "3", "RIVE-ADAM-3310", "comet-17", "Mother"),
    DemoStudent("100310", "Maya", "Chen", "LES", "4", "CHEN-MAYA-5502", "harbor-88", None),
    DemoStudent("100311", "Leo", "Okafor", "WMS", "8", "OKAF-LEO-9043", "summit-25", None),
)


@click.group(help="The demo district.")
def demo() -> None:
    pass


@demo.command("seed", help="Create (or refresh) the demo district and the demo portal's client.")
@click.option("--rp-base-url", default=DEFAULT_RP_BASE_URL, show_default=True)
def demo_seed(rp_base_url: str) -> None:
    try:
        summary = seed_demo(services(), rp_base_url=rp_base_url.rstrip("/"))
    except InvalidClientSettings as error:
        fail(str(error))
    services().session.commit()
    click.echo(summary)


def seed_demo(built: Services, *, rp_base_url: str = DEFAULT_RP_BASE_URL) -> str:
    """Create what is missing, give the portal's client a fresh secret, and describe the result."""
    guardianship = built.guardianship()
    for code, name in DEMO_SCHOOLS.items():
        guardianship.school(code, name)
    for s in DEMO_STUDENTS:
        try:
            guardianship.student_by_sis_id(s.sis_id)
        except LookupError:
            guardianship.create_student(
                sis_id=s.sis_id,
                first_name=s.first_name,
                last_name=s.last_name,
                school_code=s.school,
                access_id=s.access_id,
                access_password=s.access_password,
                grade=s.grade,
            )
    accounts = built.accounts()
    parent = accounts.find_by_username(DEMO_USERNAME)
    if parent is None:
        parent = accounts.create(
            username=DEMO_USERNAME,
            email="demo.parent@example.org",
            password=DEMO_PASSWORD,
            first_name="Dana",
            last_name="Rivera",
            account_type=AccountType.PARENT,
        )
        for s in DEMO_STUDENTS:
            if s.relationship:
                guardianship.link(parent, guardianship.student_by_sis_id(s.sis_id), s.relationship)
    # A district admin for the console; its temporary password is shown by the seed that makes it.
    admin_password: str | None = None
    if accounts.find_by_username(DEMO_ADMIN) is None:
        admin_password = (
            built.staff()
            .create(
                username=DEMO_ADMIN,
                email="demo.admin@example.org",
                first_name="Avery",
                last_name="Admin",
                role=StaffRole.DISTRICT_ADMIN,
                actor="demo seed",
            )
            .temporary_password
        )
    spec = ClientSpec(
        name="Demo School Portal",
        client_id=DEMO_CLIENT_ID,
        redirect_uris=[f"{rp_base_url}/callback"],
        post_logout_redirect_uris=[f"{rp_base_url}/"],
        backchannel_logout_uri=f"{rp_base_url}/backchannel-logout",
        first_party=True,
        # A refresh token lets the portal show the students as they are now (fresh claims).
        scope=f"{DEFAULT_CLIENT_SCOPE} offline_access",
    )
    clients = built.clients()
    existing = clients.find(DEMO_CLIENT_ID)
    registered = clients.update(existing, spec) if existing else clients.create(spec)
    built.session.flush()
    return _summary(built.issuer, rp_base_url, registered.client_secret or "", admin_password)


def _summary(issuer: str, rp_base_url: str, secret: str, admin_password: str | None) -> str:
    admin = (
        f"temporary password {admin_password}  (shown once: the first sign-in at {issuer}/admin/signin "
        "asks for a new password and an authenticator app)"
        if admin_password
        else "made by an earlier seed, which showed its temporary password"
    )
    lines = [
        "Demo district ready.",
        f"  Provider:       {issuer}  (sign in at {issuer}/signin)",
        f"  Demo parent:    username {DEMO_USERNAME}  password {DEMO_PASSWORD}",
        f"  Demo staff:     username {DEMO_ADMIN}  {admin}",
        "  Access IDs to link on /register (Access ID / Access Password):",
    ]
    for s in DEMO_STUDENTS:
        name = f"{s.first_name} {s.last_name}"
        lines.append(f"    {name:14} {DEMO_SCHOOLS[s.school]:26} {s.access_id} / {s.access_password}")
    lines += [
        "  Demo portal settings:",
        f"    RP_ISSUER={issuer}",
        f"    RP_CLIENT_ID={DEMO_CLIENT_ID}",
        f"    RP_CLIENT_SECRET={secret}",
        f"    RP_BASE_URL={rp_base_url}",
    ]
    return "\n".join(lines)
