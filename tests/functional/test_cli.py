"""The real ``idp`` commands, driven through Flask's CLI runner on both databases."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import func, select

from idp.accounts.models import Account
from idp.accounts.service import SignInContext
from idp.admin.staff import Step
from idp.cli import main
from idp.cli.demo import DEMO_ADMIN, DEMO_CLIENT_ID, DEMO_USERNAME
from idp.extensions import db
from idp.oauth.clients import ClientService
from idp.oauth.models import Client
from idp.students.models import GuardianLink, Student
from idp.web.context import services

CALLBACK = "https://portal.example.test/callback"


@pytest.fixture
def idp(app: Flask):
    """Run ``idp ARGS…`` against the test app; stdout and stderr come back apart."""
    runner = app.test_cli_runner()

    def run(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(args=list(args), input=input)
        db.session.rollback()  # read what the command committed, nothing it left pending
        db.session.expire_all()
        return result

    return run


def count(model: Any) -> int:
    return int(db.session.execute(select(func.count()).select_from(model)).scalar_one())


def assert_failed_with_one_line(result: Result, *fragments: str) -> str:
    """The command exited non-zero, cleanly (no traceback), with one line on stderr."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def assert_usage_error(result: Result, option: str) -> None:
    """Click's own refusals: usage help around one ``Error:`` line naming the option."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert option in errors[0]


def create_client(idp, *extra: str) -> Result:
    return idp("clients", "create", "--name", "Lincoln Portal", "--redirect-uri", CALLBACK, *extra)


def signs_in(username: str, password: str) -> bool:
    try:
        services().accounts().authenticate(username, password, SignInContext())
    except Exception:
        return False
    finally:
        db.session.rollback()
    return True


# --- clients ------------------------------------------------------------------------------
def test_clients_create_json_prints_one_object_with_the_secret(idp):
    result = create_client(idp, "--json")

    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    output = json.loads(result.stdout)
    assert set(output) == {"client_id", "client_secret"}
    client = ClientService(db.session).find(output["client_id"])
    assert client is not None and client.check_client_secret(output["client_secret"])
    assert client.redirect_uris == [CALLBACK]
    assert client.scope == "openid profile email students"


def test_clients_create_json_for_a_public_client_has_no_secret(idp):
    result = create_client(idp, "--public", "--json")

    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)
    assert set(output) == {"client_id"}
    client = ClientService(db.session).find(output["client_id"])
    assert client is not None and (client.is_public, client.require_pkce) == (True, True)


def test_clients_create_takes_every_documented_option(idp):
    result = create_client(
        idp,
        "--redirect-uri",
        "https://portal.example.test/other",
        "--post-logout-redirect-uri",
        "https://portal.example.test/",
        "--backchannel-logout-uri",
        "https://portal.example.test/backchannel-logout",
        "--first-party",
        "--scope",
        "openid profile offline_access",
        "--id-token-alg",
        "ES256",
        "--allow-no-pkce",
        "--json",
    )

    assert result.exit_code == 0, result.output
    client = ClientService(db.session).find(json.loads(result.stdout)["client_id"])
    assert client is not None
    assert client.redirect_uris == [CALLBACK, "https://portal.example.test/other"]
    assert client.post_logout_redirect_uris == ["https://portal.example.test/"]
    assert client.backchannel_logout_uri == "https://portal.example.test/backchannel-logout"
    assert (client.is_first_party, client.require_pkce) == (True, False)
    assert client.scope == "openid profile offline_access"
    assert client.id_token_signed_response_alg == "ES256"


def test_clients_create_without_json_prints_a_short_table(idp):
    result = create_client(idp)

    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"client_id +\S+\nclient_secret +cs_\S+ +\(shown once\)\n", result.stdout)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--redirect-uri", "https://portal.example.test/cb#frag"), "fragment"),
        (("--redirect-uri", "javascript:alert(1)"), "scheme"),
        (("--scope", "openid grades"), "grades"),
        (("--scope", "profile email"), "openid"),
        (("--public", "--allow-no-pkce"), "PKCE"),
    ],
)
def test_clients_create_refuses_bad_input_in_one_line_and_writes_no_row(idp, extra, fragment):
    result = create_client(idp, *extra, "--json")

    assert_failed_with_one_line(result, fragment)
    assert count(Client) == 0


@pytest.mark.parametrize("alg", ["HS256", "none", "PS256"])
def test_clients_create_refuses_an_unknown_id_token_alg_and_writes_no_row(idp, alg):
    result = create_client(idp, "--id-token-alg", alg, "--json")

    assert_usage_error(result, "--id-token-alg")
    assert count(Client) == 0


def test_clients_list_and_delete(idp):
    client_id = json.loads(create_client(idp, "--json").stdout)["client_id"]

    listed = idp("clients", "list", "--json")
    deleted = idp("clients", "delete", client_id)

    assert [c["client_id"] for c in json.loads(listed.stdout)] == [client_id]
    assert deleted.exit_code == 0, deleted.output
    assert count(Client) == 0


def test_clients_delete_of_an_unknown_id_fails_in_one_line(idp):
    assert_failed_with_one_line(idp("clients", "delete", "no-such-client"), "no-such-client")


# --- students -----------------------------------------------------------------------------
def create_student(idp, sis_id: str = "100234", access_id: str = "RIVE-ZOE-7721", *extra: str) -> Result:
    return idp(
        "students",
        "create",
        "--id",
        sis_id,
        "--first-name",
        "Zoe",
        "--last-name",
        "Rivera",
        "--school",
        "WMS",
        "--grade",
        "7",
        "--access-id",
        access_id,
        "--access-password",
        "orchid-42",
        *extra,
    )


def test_students_create_adds_the_student_and_its_school(idp):
    result = create_student(idp)

    assert result.exit_code == 0, result.output
    student = db.session.execute(select(Student)).scalar_one()
    assert (student.sis_id, student.first_name, student.school.code, student.grade) == (
        "100234",
        "Zoe",
        "WMS",
        "7",
    )
    assert services().hasher.verify(student.access_password_hash, "orchid-42")


@pytest.mark.parametrize(
    ("sis_id", "access_id"),
    [("100234", "OTHER-ACCESS"), ("999999", "RIVE-ZOE-7721")],
)
def test_students_create_with_a_taken_id_or_access_id_fails_in_one_line(idp, sis_id, access_id):
    assert create_student(idp).exit_code == 0

    assert_failed_with_one_line(create_student(idp, sis_id, access_id), "already exists")
    assert count(Student) == 1


def test_students_create_with_an_id_and_access_id_of_two_others_fails_in_one_line(idp):
    create_student(idp, "100234", "RIVE-ZOE-7721")
    create_student(idp, "100235", "RIVE-ADAM-3310")

    assert_failed_with_one_line(create_student(idp, "100234", "RIVE-ADAM-3310"), "already exists")
    assert count(Student) == 2


@pytest.mark.parametrize(
    ("option", "value"),
    [("--id", " "), ("--id", "9" * 33), ("--first-name", "Z" * 101), ("--grade", "1" * 17)],
)
def test_students_create_refuses_values_that_do_not_fit_on_every_database(idp, option, value):
    result = create_student(idp, "100234", "RIVE-ZOE-7721", option, value)

    assert_failed_with_one_line(result, option)
    assert count(Student) == 0


# --- accounts -----------------------------------------------------------------------------
def create_account(idp, *extra: str, input: str | None = None, password: bool = True) -> Result:
    args = ["accounts", "create", "--username", "dana.rivera", "--email", "dana@example.org"]
    args += ["--first-name", "Dana", "--last-name", "Rivera"]
    if password:
        args += ["--password", "maple-river-lunchbox-42"]
    return idp(*args, *extra, input=input)


@pytest.fixture
def zoe_and_adam(idp):
    create_student(idp, "100234", "RIVE-ZOE-7721")
    create_student(idp, "100235", "RIVE-ADAM-3310")


def test_accounts_create_links_students_with_canonical_relationships(idp, zoe_and_adam):
    result = create_account(idp, "--link", "100234:mother", "--link", "100235:STEPPARENT")

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    account = db.session.execute(select(Account)).scalar_one()
    links = db.session.execute(
        select(Student.sis_id, GuardianLink.relationship).join(GuardianLink.student).order_by(Student.sis_id)
    ).all()
    assert [tuple(link) for link in links] == [("100234", "Mother"), ("100235", "Stepparent")]
    assert (account.must_change_password, account.password_changed_at is not None) == (False, True)
    assert signs_in("dana.rivera", "maple-river-lunchbox-42")


def test_accounts_create_links_with_the_district_labels(idp, zoe_and_adam):
    assert idp("district", "set", "--relationships", "Mother,Father,Aunt").exit_code == 0

    with_aunt = create_account(idp, "--link", "100234:aunt")
    with_stepparent = create_account(idp, "--username", "other.parent", "--link", "100235:stepparent")

    assert with_aunt.exit_code == 0, with_aunt.output
    assert with_stepparent.exit_code != 0 and "stepparent" in with_stepparent.output.lower()


@pytest.mark.parametrize(
    ("links", "fragment"),
    [
        (("--link", "999999:mother"), "999999"),
        (("--link", "100234:uncle"), "uncle"),
        (("--link", "100234:mother", "--link", "999999:father"), "999999"),
        (("--link", "100234:mother", "--link", "100235:aunt"), "aunt"),
        (("--link", "100234"), "STUDENT_ID:RELATIONSHIP"),
        (("--link", ":mother"), "STUDENT_ID:RELATIONSHIP"),
    ],
)
def test_accounts_create_with_a_bad_link_fails_in_one_line_and_creates_no_account(
    idp, zoe_and_adam, links, fragment
):
    result = create_account(idp, *links)

    assert_failed_with_one_line(result, fragment)
    assert count(Account) == 0
    assert count(GuardianLink) == 0


def test_accounts_create_with_a_taken_username_fails_in_one_line(idp):
    assert create_account(idp).exit_code == 0

    result = idp(
        "accounts", "create", "--username", "DANA.RIVERA", "--email", "x@example.org",
        "--first-name", "X", "--last-name", "Y", "--password", "another-password-1",
    )  # fmt: skip

    assert_failed_with_one_line(result, "already in use")
    assert count(Account) == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [("--first-name", "D" * 101), ("--email", "d" * 250 + "@x.org"), ("--username", "u" * 65)],
)
def test_accounts_create_refuses_values_that_do_not_fit_on_every_database(idp, option, value):
    result = create_account(idp, option, value)

    assert_failed_with_one_line(result)
    assert count(Account) == 0


def test_accounts_create_reads_the_password_from_stdin(idp):
    result = create_account(idp, "--password-stdin", input="from-standard-input-99\n", password=False)

    assert result.exit_code == 0, result.output
    assert signs_in("dana.rivera", "from-standard-input-99")
    assert not signs_in("dana.rivera", "from-standard-input-99\n")


def test_accounts_create_with_an_empty_password_on_stdin_fails_in_one_line(idp):
    result = create_account(idp, "--password-stdin", input="\n", password=False)

    assert_failed_with_one_line(result, "password")
    assert count(Account) == 0


def test_accounts_create_temporary_must_change_at_first_sign_in(idp):
    assert create_account(idp, "--temporary").exit_code == 0

    account = db.session.execute(select(Account)).scalar_one()
    assert (account.must_change_password, account.password_changed_at) == (True, None)


def test_accounts_create_refuses_an_unknown_type(idp):
    assert_usage_error(create_account(idp, "--type", "teacher"), "--type")
    assert count(Account) == 0


# --- demo ---------------------------------------------------------------------------------
def demo_secret(result: Result) -> str:
    assert result.exit_code == 0, result.output
    match = re.search(r"^ +RP_CLIENT_SECRET=(\S+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return match.group(1)


def test_demo_seed_twice_keeps_the_data_and_rotates_the_portal_secret(idp):
    first = demo_secret(idp("demo", "seed"))
    counts = (count(Account), count(Student), count(GuardianLink), count(Client))

    second = demo_secret(idp("demo", "seed"))

    assert (count(Account), count(Student), count(GuardianLink), count(Client)) == counts
    assert counts == (2, 4, 2, 1)  # the demo parent and the demo district admin
    usernames = set(db.session.execute(select(Account.username)).scalars())
    assert usernames == {DEMO_USERNAME, DEMO_ADMIN}
    assert second != first
    client = ClientService(db.session).find(DEMO_CLIENT_ID)
    assert client is not None
    assert client.check_client_secret(second)
    assert not client.check_client_secret(first)


def test_demo_seed_registers_the_portal_under_its_base_url(idp):
    result = idp("demo", "seed", "--rp-base-url", "http://portal.lan:5001/")

    assert "RP_BASE_URL=http://portal.lan:5001\n" in result.stdout
    client = ClientService(db.session).find(DEMO_CLIENT_ID)
    assert client is not None
    assert client.redirect_uris == ["http://portal.lan:5001/callback"]
    assert client.post_logout_redirect_uris == ["http://portal.lan:5001/"]
    assert client.backchannel_logout_uri == "http://portal.lan:5001/backchannel-logout"


def test_demo_parent_signs_in_with_the_printed_password(idp):
    result = idp("demo", "seed")
    match = re.search(rf"username {re.escape(DEMO_USERNAME)} +password (\S+)", result.stdout)

    assert match
    assert signs_in(DEMO_USERNAME, match.group(1))


def test_demo_admin_signs_in_to_the_console_with_the_printed_temporary_password(idp):
    result = idp("demo", "seed")
    match = re.search(r"username demo\.admin +temporary password (\S+)", result.stdout)

    assert match, result.stdout
    started = services().staff().sign_in("demo.admin", match.group(1), SignInContext())
    assert started.console.step is Step.CHANGE_PASSWORD  # then an authenticator, before any page
    db.session.rollback()


# --- keys ---------------------------------------------------------------------------------
def test_keys_list_json_lists_the_active_keys(idp):
    result = idp("keys", "list", "--json")

    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {(k["alg"], k["state"]) for k in listed} >= {("RS256", "active"), ("ES256", "active")}
    assert [k["kid"] for k in listed] == [r.kid for r in services().keys.records()]
    for key in listed:
        assert (
            {"kid", "alg", "state", "created_at", "file"}
            <= set(key)
            <= {"kid", "alg", "state", "created_at", "activated_at", "retired_at", "revoked_at", "file"}
        )


def test_keys_list_prints_one_line_per_key(idp):
    result = idp("keys", "list")

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(services().keys.records())


# --- the installed entry point ------------------------------------------------------------
@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No IDP_* or FLASK_* variable from the machine, and a scratch working directory."""
    for name in [n for n in os.environ if n.startswith(("IDP_", "FLASK_"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_unsafe_production_settings_stop_any_command_in_one_line(clean_environment):

    result = CliRunner().invoke(main, ["keys", "list"], env={"IDP_ENV": "production"})

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: IDP_REDIS_URL is required in production (redis://host:6379/0)."
    ]


def test_key_files_without_a_manifest_stop_any_command_in_one_line(clean_environment):
    tmp_path = clean_environment
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "rs256-old.pem").write_text("-----BEGIN PRIVATE KEY-----\n")

    env = {"IDP_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "IDP_SECRET_KEY": "s" * 40}

    result = CliRunner().invoke(main, ["keys", "list"], env=env)

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "manifest.json" in lines[0]
