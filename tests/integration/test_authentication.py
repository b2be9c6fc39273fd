"""AccountService.authenticate and create on SQLite and PostgreSQL, without HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from idp.accounts.models import Account, AccountStatus
from idp.accounts.passwords import PasswordHasher
from idp.accounts.service import (
    AccountDisabled,
    AccountExpired,
    AccountService,
    InvalidCredentials,
    SignInContext,
    UsernameTaken,
)
from idp.audit import AuditEvent
from idp.extensions import db
from idp.policy import HashingPolicy
from idp.web.context import services
from tests.conftest import PASSWORD
from tests.integration.helpers import audit_names, count

HOME = SignInContext(ip_address="203.0.113.7", user_agent="pytest")
STRONGER = HashingPolicy(time_cost=2, memory_kib=512, parallelism=1)


class CountingHasher:
    """Wraps a PasswordHasher and counts the argon2 runs asked of it."""

    def __init__(self, inner: PasswordHasher) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def verify(self, stored_hash: str, password: str) -> bool:
        self.calls.append("verify")
        return self.inner.verify(stored_hash, password)

    def verify_dummy(self, password: str) -> None:
        self.calls.append("verify_dummy")
        self.inner.verify_dummy(password)


def service(hasher: Any = None) -> AccountService:
    rt = services()
    return AccountService(db.session, hasher=hasher or rt.hasher, clock=rt.clock)


def reloaded(account: Account) -> Account:
    db.session.commit()
    db.session.expire_all()
    return db.session.execute(select(Account).where(Account.id == account.id)).scalar_one()


def sign_in(username: str, context: SignInContext = HOME) -> Account:
    return services().signin().sign_in(username, PASSWORD, context, browser_session=None).account


# --- authenticate -------------------------------------------------------------------------
def test_right_password_returns_the_account_and_the_sign_in_records_it(make_account, clock):
    account = make_account(username="dana.rivera")

    assert service().authenticate("dana.rivera", PASSWORD, HOME).id == account.id
    signed_in = sign_in("dana.rivera")

    stored = reloaded(signed_in)
    assert stored.id == account.id
    assert stored.current_login_at == clock.now()
    assert stored.current_login_ip == "203.0.113.7"
    assert stored.last_login_at is None
    assert stored.login_count == 1
    assert audit_names()[-1] == "signin.succeeded"


def test_second_sign_in_moves_the_previous_one_to_last_login(make_account, clock):
    make_account(username="dana.rivera")
    first_at = clock.now()
    sign_in("dana.rivera")
    clock.advance(timedelta(hours=5))

    account = sign_in("Dana.Rivera", SignInContext(ip_address="198.51.100.2"))

    stored = reloaded(account)
    assert (stored.last_login_at, stored.last_login_ip) == (first_at, "203.0.113.7")
    assert (stored.current_login_at, stored.current_login_ip) == (
        first_at + timedelta(hours=5),
        "198.51.100.2",
    )
    assert stored.login_count == 2


def test_unknown_username_costs_one_dummy_verify(app):
    hasher = CountingHasher(services().hasher)

    with pytest.raises(InvalidCredentials):
        service(hasher).authenticate("nobody", PASSWORD, HOME)

    assert hasher.calls == ["verify_dummy"]
    failed = db.session.execute(select(AuditEvent).where(AuditEvent.name == "signin.failed")).scalar_one()
    assert failed.account_id is None
    assert failed.details == {"reason": "credentials", "user_agent": HOME.user_agent}


def test_overlong_username_costs_one_dummy_verify_without_a_lookup(make_account):
    hasher = CountingHasher(services().hasher)

    with pytest.raises(InvalidCredentials):
        service(hasher).authenticate("x" * 10_000, PASSWORD, HOME)

    assert hasher.calls == ["verify_dummy"]


def test_overlong_password_costs_one_dummy_verify(make_account):
    make_account(username="dana.rivera")
    hasher = CountingHasher(services().hasher)

    with pytest.raises(InvalidCredentials):
        service(hasher).authenticate("dana.rivera", "p" * 257, HOME)

    assert hasher.calls == ["verify_dummy"]


def test_wrong_password_costs_one_verify_and_raises_invalid_credentials(make_account):
    account = make_account(username="dana.rivera")
    hasher = CountingHasher(services().hasher)

    with pytest.raises(InvalidCredentials):
        service(hasher).authenticate("dana.rivera", PASSWORD + "!", HOME)

    assert hasher.calls == ["verify"]
    stored = reloaded(account)
    assert (stored.login_count, stored.current_login_at) == (0, None)
    failed = db.session.execute(select(AuditEvent).where(AuditEvent.name == "signin.failed")).scalar_one()
    assert failed.account_id == account.id


def test_unknown_username_and_wrong_password_are_told_apart_by_nothing(make_account):
    make_account(username="dana.rivera")

    with pytest.raises(InvalidCredentials) as unknown:
        service().authenticate("nobody", PASSWORD, HOME)
    with pytest.raises(InvalidCredentials) as wrong:
        service().authenticate("dana.rivera", "wrong", HOME)

    assert (type(unknown.value), str(unknown.value)) == (type(wrong.value), str(wrong.value))


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(days=-1)])
def test_expired_account_raises_account_expired(make_account, clock, offset):
    account = make_account(username="dana.rivera")
    account.expires_at = clock.now() + offset
    db.session.commit()

    with pytest.raises(AccountExpired):
        service().authenticate("dana.rivera", PASSWORD, HOME)

    assert reloaded(account).login_count == 0
    assert "signin.refused" in audit_names()


def test_account_expiring_later_signs_in(make_account, clock):
    account = make_account(username="dana.rivera")
    account.expires_at = clock.now() + timedelta(seconds=1)
    db.session.commit()

    assert service().authenticate("dana.rivera", PASSWORD, HOME).id == account.id


def test_disabled_account_raises_account_disabled(make_account):
    account = make_account(username="dana.rivera")
    account.status = AccountStatus.DISABLED
    db.session.commit()

    with pytest.raises(AccountDisabled):
        service().authenticate("dana.rivera", PASSWORD, HOME)

    assert reloaded(account).login_count == 0


@pytest.mark.parametrize("status", [AccountStatus.DISABLED, "expired"])
def test_wrong_password_on_a_refused_account_says_only_invalid_credentials(make_account, clock, status):
    account = make_account(username="dana.rivera")
    if status == "expired":
        account.expires_at = clock.now() - timedelta(days=1)
    else:
        account.status = status
    db.session.commit()

    with pytest.raises(InvalidCredentials):
        service().authenticate("dana.rivera", "wrong", HOME)


def test_hash_with_older_parameters_is_upgraded_at_sign_in(make_account):
    account = make_account(username="dana.rivera")  # hashed with the app's (cheap) parameters
    old_hash = account.password_hash
    stronger = PasswordHasher(STRONGER)
    assert stronger.needs_rehash(old_hash)

    service(stronger).authenticate("dana.rivera", PASSWORD, HOME)

    stored = reloaded(account)
    assert stored.password_hash != old_hash
    assert "$m=512,t=2,p=1$" in stored.password_hash
    assert not stronger.needs_rehash(stored.password_hash)
    assert stronger.verify(stored.password_hash, PASSWORD)
    assert "password_hash.upgraded" in audit_names()


def test_hash_with_current_parameters_is_left_alone_at_sign_in(make_account):
    account = make_account(username="dana.rivera")
    old_hash = account.password_hash

    service().authenticate("dana.rivera", PASSWORD, HOME)

    assert reloaded(account).password_hash == old_hash
    assert "password_hash.upgraded" not in audit_names()


def test_refused_sign_in_upgrades_no_hash(make_account):
    account = make_account(username="dana.rivera")
    account.status = AccountStatus.DISABLED
    db.session.commit()
    old_hash = account.password_hash

    with pytest.raises(AccountDisabled):
        service(PasswordHasher(STRONGER)).authenticate("dana.rivera", PASSWORD, HOME)

    assert reloaded(account).password_hash == old_hash


# --- usernames ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "clash",
    ["john.smith", "JOHN.SMITH", "  John.Smith  ", "Ｊｏｈｎ.Ｓｍｉｔｈ"],
)
def test_username_uniqueness_ignores_case_spaces_and_compatibility_forms(make_account, clash):
    make_account(username="John.Smith")

    with pytest.raises(UsernameTaken):
        make_account(username=clash)

    db.session.rollback()
    assert count(Account) == 1


def test_case_folded_spellings_clash(make_account):
    make_account(username="Straße")

    with pytest.raises(UsernameTaken):
        make_account(username="STRASSE")


def test_composed_and_decomposed_accents_clash(make_account):
    make_account(username="jos\u00e9")

    with pytest.raises(UsernameTaken):
        make_account(username="Jose\u0301")


def test_username_keeps_its_display_form_and_signs_in_under_any_equivalent(make_account):
    account = make_account(username="  John.Smith ")

    assert reloaded(account).username == "John.Smith"
    assert service().authenticate("ＪＯＨＮ.smith", PASSWORD, HOME).id == account.id


@pytest.mark.parametrize("username", ["", "   ", "u" * 65])
def test_empty_or_overlong_username_is_refused(make_account, username):
    with pytest.raises(ValueError, match="username"):
        make_account(username=username)


def test_username_whose_display_form_exceeds_64_characters_is_refused(make_account):
    # 64 letters, each with a combining accent: NFKC composes the key to 64 characters,
    # but the display form (what is stored in ``username``) is 128.
    with pytest.raises(ValueError, match="username"):
        make_account(username="e\u0301" * 64)


@pytest.mark.parametrize(
    ("field", "value"),
    [("first_name", "F" * 101), ("last_name", "L" * 101), ("email", "e" * 250 + "@x.org")],
)
def test_overlong_profile_fields_are_refused_on_every_database(make_account, field, value):
    with pytest.raises(ValueError, match=field.replace("_", " ")):
        make_account(**{field: value})


def test_password_over_256_characters_is_refused(make_account):
    with pytest.raises(ValueError, match="256"):
        make_account(password="p" * 257)


def test_password_of_256_characters_is_accepted(make_account):
    account = make_account(username="long", password="p" * 256)

    assert service().authenticate("long", "p" * 256, HOME).id == account.id


def test_temporary_password_must_be_changed(make_account):
    account = make_account(temporary=True)

    assert (account.must_change_password, account.password_changed_at) == (True, None)
