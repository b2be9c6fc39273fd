"""Sign-in and account creation, without HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from idp.accounts.models import Account, AccountStatus, AccountType
from idp.accounts.passwords import MAX_PASSWORD_LENGTH, PasswordHasher
from idp.accounts.usernames import MAX_USERNAME_LENGTH, username_key
from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession


class InvalidCredentials(Exception):
    """Unknown username or wrong password: the two are never told apart."""


class AccountDisabled(Exception):
    pass


class AccountExpired(Exception):
    pass


class UsernameTaken(ValueError):
    pass


@dataclass(frozen=True)
class SignInContext:
    ip_address: str | None = None
    user_agent: str | None = None


class AccountService:
    def __init__(self, session: DbSession, *, hasher: PasswordHasher, clock: Clock) -> None:
        self.session = session
        self.hasher = hasher
        self.clock = clock

    def find_by_username(self, username: str) -> Account | None:
        return self.session.execute(
            select(Account).where(Account.username_key == username_key(username))
        ).scalar_one_or_none()

    def authenticate(self, username: str, password: str, context: SignInContext) -> Account:
        """Return the account if ``password`` is right, recording the sign-in; else raise."""
        account = None
        # NUL is in no username, and PostgreSQL refuses it in a query parameter (an error, not a miss).
        if (
            len(username) <= MAX_USERNAME_LENGTH * 4
            and len(password) <= MAX_PASSWORD_LENGTH
            and "\x00" not in username
        ):
            account = self.find_by_username(username)
        if account is None:
            # Equal cost whether or not the username exists: timing tells nothing.
            self.hasher.verify_dummy(password[:MAX_PASSWORD_LENGTH])
            audit(self.session, "signin.failed", ip_address=context.ip_address, reason="credentials")
            raise InvalidCredentials()
        if not self.hasher.verify(account.password_hash, password):
            audit(
                self.session,
                "signin.failed",
                account_id=account.id,
                ip_address=context.ip_address,
                reason="credentials",
            )
            raise InvalidCredentials()
        now = self.clock.now()
        if account.status is AccountStatus.DISABLED:
            audit(self.session, "signin.refused", account_id=account.id, reason="disabled")
            raise AccountDisabled()
        if account.has_expired(now):
            audit(self.session, "signin.refused", account_id=account.id, reason="expired")
            raise AccountExpired()
        if self.hasher.needs_rehash(account.password_hash):
            account.password_hash = self.hasher.hash(password)
            audit(self.session, "password_hash.upgraded", account_id=account.id)
        account.last_login_at, account.last_login_ip = (
            account.current_login_at,
            account.current_login_ip,
        )
        account.current_login_at, account.current_login_ip = now, context.ip_address
        account.login_count += 1
        audit(self.session, "signin.succeeded", account_id=account.id, ip_address=context.ip_address)
        return account

    def create(
        self,
        *,
        username: str,
        email: str,
        password: str,
        first_name: str,
        last_name: str,
        account_type: AccountType = AccountType.PARENT,
        temporary: bool = False,
        status: AccountStatus = AccountStatus.CONFIRMED,
    ) -> Account:
        """Create an account; a temporary password must be changed at first sign-in."""
        key = username_key(username)
        # The display form is stored too: NFKC may make the key shorter than what was typed.
        if not key or max(len(key), len(username.strip())) > MAX_USERNAME_LENGTH:
            raise ValueError(f"username must be 1 to {MAX_USERNAME_LENGTH} characters")
        # The column sizes, checked here so that SQLite and PostgreSQL refuse the same input.
        for label, value, limit in (
            ("email", email, 254),
            ("first name", first_name, 100),
            ("last name", last_name, 100),
        ):
            if len(value.strip()) > limit:
                raise ValueError(f"{label} must be at most {limit} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"password must be at most {MAX_PASSWORD_LENGTH} characters long")
        if self.find_by_username(username) is not None:
            raise UsernameTaken(f"the username {username.strip()!r} is already in use")
        now = self.clock.now()
        account = Account(
            type=account_type,
            username=username.strip(),
            username_key=key,
            email=email.strip(),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            password_hash=self.hasher.hash(password),
            password_changed_at=None if temporary else now,
            must_change_password=temporary,
            status=status,
            created_at=now,
        )
        self.session.add(account)
        self.session.flush()
        audit(self.session, "account.created", account_id=account.id, account_type=account_type.value)
        return account
