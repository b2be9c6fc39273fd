"""The key store in the database (``IDP_KEYS_STORE=database``): instances share keys, not a disk.

Reads (the ring's check every ``IDP_KEYS_CHECK_SECONDS`` and its loads) run on the driver's cursor
outside any transaction of SQLAlchemy's: idp.db begins every SQLite transaction with
``BEGIN IMMEDIATE``, and a read there would queue behind (or, in a thread whose request holds the
write lock, wait for) every writer. A check reads one row: the set's generation. Changes run in one
transaction that first locks that row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` has already taken the one write lock), read the keys as they are, write the
change and add one to the generation, so changes from any number of processes take turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from joserfc.errors import JoseError
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from idp.clock import Clock
from idp.db import DbSession, utcnow
from idp.keys.cipher import AlteredKey, KeyCipher, KeySetSeal, ScryptCost, key_associated_data
from idp.keys.keystore import (
    KeyDraft,
    KeyStoreUnavailable,
    Recorder,
    StoredKeys,
    check_whole_set,
    first_key_set,
    settle,
)
from idp.keys.models import KEY_SET_ID, KeySetRow, SigningKeyRow
from idp.keys.store import (
    PUBLISHED_STATES,
    SUPPORTED_ALGORITHMS,
    KeyRecord,
    KeySetError,
    SigningKey,
    check_states,
    import_private_key,
)

INSERTS: dict[str, Callable[..., Any]] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

STAMP = select(KeySetRow.kdf_salt, KeySetRow.generation).where(KeySetRow.id == KEY_SET_ID)
SEAL = select(
    KeySetRow.generation,
    KeySetRow.kdf_salt,
    KeySetRow.kdf_n,
    KeySetRow.kdf_r,
    KeySetRow.kdf_p,
    KeySetRow.check_nonce,
    KeySetRow.check_ciphertext,
).where(KeySetRow.id == KEY_SET_ID)
RECORD_COLUMNS = (
    SigningKeyRow.kid,
    SigningKeyRow.alg,
    SigningKeyRow.state,
    SigningKeyRow.created_at,
    SigningKeyRow.activated_at,
    SigningKeyRow.retired_at,
    SigningKeyRow.revoked_at,
)
ORDER = (SigningKeyRow.created_at, SigningKeyRow.kid)
RECORDS = select(*RECORD_COLUMNS).order_by(*ORDER)
ANY_KEY = select(SigningKeyRow.kid).limit(1)
KEYS = select(*RECORD_COLUMNS, SigningKeyRow.nonce, SigningKeyRow.private_key).order_by(*ORDER)

Stamp = tuple[bytes, int] | None
NO_KEY_SET = (
    "the database holds no key set; start the provider once to make one, or copy one in with "
    "`idp keys migrate-store --to database`"
)


class DatabaseKeyStore:
    """The key set in ``key_set`` and ``signing_key``, private keys sealed with ``passphrase``.

    ``change_session`` gives the session a change is made in (the composition root passes the
    app's, so that the audit rows of a change commit with it); by default each change has its own.
    """

    kind = "database"

    def __init__(
        self,
        engine: Engine,
        *,
        passphrase: str,
        change_session: Callable[[], DbSession] | None = None,
        cost: ScryptCost | None = None,
    ) -> None:
        self.engine = engine
        self.cipher = KeyCipher(passphrase)
        self.change_session = change_session
        self.cost = cost or ScryptCost()

    def describe(self) -> str:
        return "the key set in the database"

    # --- reads ---------------------------------------------------------------------------
    def stamp(self) -> Stamp:
        rows = self._read(STAMP)
        return (bytes(rows[0][0]), int(rows[0][1])) if rows else None

    def load(self) -> StoredKeys:
        # The generation before and after the keys: equal, the keys are the ones it names.
        for _attempt in range(5):
            head = self._read(SEAL)
            rows = self._read(KEYS)
            if self._read(SEAL) == head:
                return self._stored(head, rows)
        raise KeyStoreUnavailable("the key set in the database kept changing while it was read; try again")

    def read_records(self) -> tuple[KeyRecord, ...]:
        records = tuple(_record(row) for row in self._read(RECORDS))
        check_states(self.describe(), records)
        return records

    def is_empty(self) -> bool:
        return not self._read(ANY_KEY)

    def _stored(self, head: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]) -> StoredKeys:
        if not head or not rows:
            raise KeySetError(NO_KEY_SET)
        generation, salt, n, r, p, check_nonce, check_ciphertext = head[0]
        seal = KeySetSeal(bytes(salt), ScryptCost(n, r, p))
        self.cipher.verify_check_value(seal, bytes(check_nonce), bytes(check_ciphertext))
        records = tuple(_record(row) for row in rows)
        check_states(self.describe(), records)
        private = {
            record.kid: self._open_key(seal, record, row[7], row[8])
            for record, row in zip(records, rows, strict=True)
            if record.state in PUBLISHED_STATES
        }
        return StoredKeys(records, private, (bytes(salt), int(generation)))

    def _open_key(
        self, seal: KeySetSeal, record: KeyRecord, nonce: bytes | None, sealed: bytes | None
    ) -> SigningKey:
        if nonce is None or sealed is None:
            raise KeySetError(f"the database holds no private key for {record.kid} ({record.state})")
        try:
            pem = self.cipher.open(
                seal, bytes(nonce), bytes(sealed), key_associated_data(record.kid, record.alg)
            )
            return import_private_key(record, pem)
        except InvalidTag:
            raise AlteredKey(record.kid) from None
        except (JoseError, ValueError, TypeError) as error:
            raise KeySetError(
                f"the private key of {record.kid} in the database is unreadable ({error})"
            ) from None

    def _read(self, statement: Select[*tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Run one parameterless read on the driver's cursor (see the module's docstring)."""
        dialect = self.engine.dialect
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]
        try:
            with self.engine.connect() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(sql)
                    found = cursor.fetchall()
                finally:
                    cursor.close()
        except (SQLAlchemyError, dialect.loaded_dbapi.Error) as error:
            raise KeyStoreUnavailable(
                f"the key set in the database cannot be read ({error.__class__.__name__}); "
                "is the database up and migrated (`idp db upgrade`)?"
            ) from None
        return [
            tuple(
                value if process is None else process(value)
                for value, process in zip(row, processors, strict=True)
            )
            for row in found
        ]

    # --- changes -------------------------------------------------------------------------
    def ensure(self, *, clock: Clock, algorithms: Iterable[str] = SUPPORTED_ALGORITHMS) -> None:
        if not self.is_empty():
            return
        with self._own_transaction() as session:
            self._create_set_row(session, clock.now())
            state = self._lock(session)
            if session.scalars(select(SigningKeyRow.kid).limit(1)).first() is not None:
                return  # another process made the set while we waited for the lock
            draft = KeyDraft((), now=clock.now())
            first_key_set(draft, algorithms)
            settle(draft, self.describe(), None, lambda d: self._write(session, state, d, {}))

    def change(
        self, apply: Callable[[KeyDraft], None], *, clock: Clock, record: Recorder | None = None
    ) -> KeyDraft:
        with self._change_transaction() as session:
            state = self._lock(session)
            rows = self._rows(session)
            draft = KeyDraft(sorted((_record_of(row) for row in rows.values()), key=_order), now=clock.now())
            apply(draft)
            settle(draft, self.describe(), record, lambda d: self._write(session, state, d, rows))
        return draft

    def replace_all(self, keys: StoredKeys, *, before_write: Callable[[], None] | None = None) -> None:
        check_whole_set(keys, self.describe())
        with self._change_transaction() as session:
            self._create_set_row(session, utcnow())
            state = self._lock(session)
            # Every key is sealed again: under a fresh salt, and the passphrase of this process.
            self._reseal(state)
            if before_write is not None:
                before_write()
            draft = KeyDraft(keys.records, now=utcnow())
            draft.new_keys.update(keys.private)
            self._write(session, state, draft, self._rows(session))

    def _write(
        self, session: DbSession, state: KeySetRow, draft: KeyDraft, rows: dict[str, SigningKeyRow]
    ) -> None:
        seal = KeySetSeal(state.kdf_salt, ScryptCost(state.kdf_n, state.kdf_r, state.kdf_p))
        # A new key sealed under another passphrase than the set's would never open again.
        self.cipher.verify_check_value(seal, state.check_nonce, state.check_ciphertext)
        kept = {r.kid for r in draft.records}
        for kid, row in rows.items():
            if kid not in kept:
                session.delete(row)
        for record in draft.records:
            found = rows.get(record.kid)
            if found is None:
                row = SigningKeyRow(kid=record.kid)
                session.add(row)
            else:
                row = found
            row.alg, row.state, row.created_at = record.alg, record.state, record.created_at
            row.activated_at, row.retired_at = record.activated_at, record.retired_at
            row.revoked_at = record.revoked_at
            key = draft.new_keys.get(record.kid)
            if key is not None and record.state != "revoked":
                row.nonce, row.private_key = self.cipher.seal(
                    seal, key.as_pem(private=True), key_associated_data(record.kid, record.alg)
                )
            if record.state == "revoked":
                row.nonce, row.private_key = None, None  # a revoked key's private part is destroyed
        state.generation += 1
        state.changed_at = draft.now
        session.flush()

    def _reseal(self, state: KeySetRow) -> None:
        seal = KeySetSeal.new(self.cost)
        state.kdf_salt, state.kdf_n, state.kdf_r, state.kdf_p = (
            seal.salt,
            seal.cost.n,
            seal.cost.r,
            seal.cost.p,
        )
        state.check_nonce, state.check_ciphertext = self.cipher.check_value(seal)

    @staticmethod
    def _rows(session: DbSession) -> dict[str, SigningKeyRow]:
        """The key rows as they are now (read again: the session may hold older copies)."""
        current = session.scalars(select(SigningKeyRow).execution_options(populate_existing=True))
        return {row.kid: row for row in current}

    def _lock(self, session: DbSession) -> KeySetRow:
        locked = session.scalars(
            select(KeySetRow)
            .where(KeySetRow.id == KEY_SET_ID)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
        if locked is None:
            raise KeySetError(NO_KEY_SET)
        return locked

    def _create_set_row(self, session: DbSession, now: datetime) -> None:
        """Insert the set's row unless there is one: on a conflict the insert waits, then does nothing."""
        if session.scalars(select(KeySetRow.id).where(KeySetRow.id == KEY_SET_ID)).first() is not None:
            return
        seal = KeySetSeal.new(self.cost)
        check_nonce, check_ciphertext = self.cipher.check_value(seal)
        values = {
            "id": KEY_SET_ID,
            "generation": 0,
            "changed_at": now,
            "kdf_salt": seal.salt,
            "kdf_n": seal.cost.n,
            "kdf_r": seal.cost.r,
            "kdf_p": seal.cost.p,
            "check_nonce": check_nonce,
            "check_ciphertext": check_ciphertext,
        }
        insert = INSERTS[self.engine.dialect.name]
        session.execute(insert(KeySetRow).values(**values).on_conflict_do_nothing(index_elements=["id"]))

    @contextmanager
    def _own_transaction(self) -> Iterator[Session]:
        with _refused_by_database(), Session(self.engine) as session, session.begin():
            yield session

    @contextmanager
    def _change_transaction(self) -> Iterator[DbSession]:
        if self.change_session is None:
            with self._own_transaction() as session:
                yield session
            return
        shared = self.change_session()
        with _refused_by_database():
            try:
                yield shared
                shared.commit()
            except BaseException:
                shared.rollback()
                raise


@contextmanager
def _refused_by_database() -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as error:
        raise KeyStoreUnavailable(
            f"the key set in the database cannot be changed ({error.__class__.__name__}); nothing changed"
        ) from error


def _order(record: KeyRecord) -> tuple[Any, str]:
    return (record.created_at, record.kid)


def _record(row: tuple[Any, ...]) -> KeyRecord:
    kid, alg, state, created_at, activated_at, retired_at, revoked_at = row[:7]
    return KeyRecord(kid, alg, state, created_at, f"{kid}.pem", activated_at, retired_at, revoked_at)


def _record_of(row: SigningKeyRow) -> KeyRecord:
    return KeyRecord(
        row.kid,
        row.alg,
        row.state,
        row.created_at,
        f"{row.kid}.pem",
        row.activated_at,
        row.retired_at,
        row.revoked_at,
    )
