"""Imported accounts sign in over HTTP with their old passwords, are upgraded to argon2id, and sign in
again under it; a wrong password costs what it costs a modern account."""

from __future__ import annotations

import csv
import io
from typing import Any

import bcrypt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from idp.accounts.legacy_hashes import SCHEMES
from idp.accounts.legacy_import import HEADER
from idp.accounts.models import Account
from idp.accounts.policy_models import PasswordHistory
from idp.audit import AuditEvent
from idp.extensions import db
from idp.web.context import services
from tests.functional.test_forced_change import CHANGE_PAGE, NEW_PASSWORD, change, sign_in
from tests.integration.test_legacy_import import PASSWORD, legacy_row

INVALID = "Invalid username or password."
EVERY_FORMAT = [*sorted(SCHEMES), "plaintext"]


def import_rows(*rows: dict[str, str]) -> None:
    """Import ``rows`` as ``idp accounts import`` does, and leave no transaction open."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows([row[column] for column in HEADER] for row in rows)
    report = (
        services()
        .legacy_accounts()
        .import_csv(io.BytesIO(out.getvalue().encode()), name="pwa.csv", dry_run=False, actor="test")
    )
    assert report.written and not report.rejected, report


def stored(username: str) -> dict[str, Any]:
    account = db.session.execute(select(Account).where(Account.username == username)).scalar_one()
    values = {
        "scheme": account.password_scheme,
        "hash": account.password_hash,
        "salt": account.legacy_salt,
        "must_change": account.must_change_password,
        "id": account.id,
    }
    db.session.rollback()  # no transaction left open: on SQLite it would hold the write lock
    return values


def upgrades(account_id: str) -> list[dict[str, Any]]:
    events = db.session.execute(
        select(AuditEvent.details).where(
            AuditEvent.name == "account.password_upgraded", AuditEvent.account_id == account_id
        )
    ).scalars()
    found = list(events)
    db.session.rollback()
    return found


def argon2_verifications() -> float:
    value = REGISTRY.get_sample_value("idp_argon2_verifications_total")
    assert value is not None
    return value


def fresh(client: FlaskClient) -> FlaskClient:
    return FlaskClient(client.application, use_cookies=True)


@pytest.mark.parametrize("scheme", EVERY_FORMAT)
def test_an_old_password_signs_in_is_upgraded_and_signs_in_again_under_argon2id(
    client: FlaskClient, scheme: str
) -> None:
    import_rows(legacy_row("ana.lopez", scheme, hash_type=scheme))
    before = stored("ana.lopez")
    assert before["scheme"] == ("sha256_salt_prefix" if scheme == "plaintext" else scheme)

    first = sign_in(client, "ana.lopez", PASSWORD)

    assert first.status_code == 303
    after = stored("ana.lopez")
    assert after["scheme"] == "argon2id" and after["hash"].startswith("$argon2id$") and after["salt"] is None
    # Audited by scheme name only: neither the old hash nor its salt is written anywhere.
    assert upgrades(after["id"]) == [{"scheme": before["scheme"]}]
    if scheme == "plaintext":
        # A password the district set in plain text is changed before the sign-in completes.
        assert first.headers["Location"].endswith(CHANGE_PAGE) and after["must_change"]
        assert change(client, current=PASSWORD).status_code == 303
        password = NEW_PASSWORD
    else:
        assert first.headers["Location"].endswith("/account") and not after["must_change"]
        password = PASSWORD
    verified = argon2_verifications()

    again = sign_in(fresh(client), "ana.lopez", password)

    assert again.status_code == 303 and again.headers["Location"].endswith("/account")
    assert argon2_verifications() == verified + 1  # argon2id alone, no legacy check now
    assert len(upgrades(after["id"])) == 1


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_a_wrong_password_costs_one_argon2_verification_as_for_a_modern_account(
    client: FlaskClient, make_account, scheme: str
) -> None:
    import_rows(legacy_row("ana.lopez", scheme))
    make_account(username="modern.parent")
    db.session.rollback()

    spent = []
    for username in ("ana.lopez", "modern.parent"):
        before = argon2_verifications()
        page = sign_in(fresh(client), username, "not the password")
        assert page.status_code == 200 and INVALID in page.get_data(as_text=True)
        spent.append(argon2_verifications() - before)

    assert spent == [1, 1]
    assert stored("ana.lopez")["scheme"] == scheme  # nothing upgraded on a failure


@pytest.mark.parametrize("default", ["welcome", "changeme"])
def test_a_districts_reset_password_must_be_changed_at_first_sign_in(
    client: FlaskClient, default: str
) -> None:
    hashed = bcrypt.hashpw(default.encode(), bcrypt.gensalt(rounds=4)).decode()
    import_rows(legacy_row("ana.lopez", "bcrypt", password_hash=hashed))

    response = sign_in(client, "ana.lopez", default)

    assert response.status_code == 303 and response.headers["Location"].endswith(CHANGE_PAGE)
    assert stored("ana.lopez")["scheme"] == "argon2id" and stored("ana.lopez")["must_change"]
    assert change(client, current=default).status_code == 303
    assert sign_in(fresh(client), "ana.lopez", NEW_PASSWORD).headers["Location"].endswith("/account")


def test_a_password_never_changed_by_its_holder_must_be_changed_at_first_sign_in(client: FlaskClient) -> None:
    import_rows(legacy_row("ana.lopez", "sha1_salt_prefix", password_changed_at=""))

    response = sign_in(client, "ana.lopez", PASSWORD)

    assert response.headers["Location"].endswith(CHANGE_PAGE)
    assert stored("ana.lopez")["scheme"] == "argon2id"


def test_a_disabled_legacy_account_is_refused_and_keeps_its_hash(client: FlaskClient) -> None:
    import_rows(legacy_row("ana.lopez", "md5_salt_suffix", status="disabled"))

    page = sign_in(client, "ana.lopez", PASSWORD)

    assert page.status_code == 200
    assert stored("ana.lopez")["scheme"] == "md5_salt_suffix"


def test_a_temporary_password_from_staff_replaces_the_legacy_hash_without_keeping_it(
    client: FlaskClient, app: Flask
) -> None:
    import_rows(legacy_row("ana.lopez", "pbkdf2_sha256"))
    account = db.session.execute(select(Account).where(Account.username == "ana.lopez")).scalar_one()
    old_hash = account.password_hash

    given = services().administration(actor="cli:test").set_temporary_password(account, None)

    after = stored("ana.lopez")
    assert after["scheme"] == "argon2id" and after["salt"] is None
    history = db.session.execute(select(PasswordHistory.password_hash)).scalars().all()
    db.session.rollback()
    assert old_hash not in history
    response = sign_in(client, "ana.lopez", given.password)
    assert response.headers["Location"].endswith(CHANGE_PAGE)
