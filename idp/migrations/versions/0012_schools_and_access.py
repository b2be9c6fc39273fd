"""schools as data, and Access credentials the district issues

A school gets a time zone (an IANA name; none is the district's ``IDP_TIMEZONE``) and an optional
address. A student's Access Password may be missing: a roster's new student has an Access ID and
no Access Password until a letter or ``idp students issue-access`` gives one. Under the district's
single-use option a used Access Password is marked (``access_password_used_at``) and stops
working; a new one clears the mark. ``home_language`` is the family's language as the roster
gives it, for the letters.

Only nullable columns are added, and the one NOT NULL dropped is altered in place on PostgreSQL.
SQLite cannot drop a NOT NULL without copying the table, and dropping the old ``student`` with
foreign keys on would delete what cascades from it (guardian links) or refuse (accounts' primary
student): there, the copy runs with foreign keys off, as SQLite's documentation prescribes
(https://sqlite.org/lang_altertable.html#otheralter), keeps the indexes batch mode cannot
reflect, and is checked before going on.

Revision ID: 0012_schools_and_access
Revises: 0011_account_search
Create Date: 2026-12-07 08:00:00.000000

"""
import warnings
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

_EXPRESSION_INDEX = "Skipped unsupported reflection of expression-based index"


# revision identifiers, used by Alembic.
revision = '0012_schools_and_access'
down_revision = '0011_account_search'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('school', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('address', sa.String(length=500), nullable=True))
    with _sqlite_copy('student'), op.batch_alter_table('student', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_password_used_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('home_language', sa.String(length=16), nullable=True))
        batch_op.alter_column('access_password_hash', existing_type=sa.String(length=255), nullable=True)


def downgrade():
    # A student without an Access Password gets one nobody can match: an invalid argon2 string.
    op.execute("UPDATE student SET access_password_hash = '!' WHERE access_password_hash IS NULL")
    with _sqlite_copy('student'), op.batch_alter_table('student', schema=None) as batch_op:
        batch_op.alter_column('access_password_hash', existing_type=sa.String(length=255), nullable=False)
        batch_op.drop_column('home_language')
        batch_op.drop_column('access_password_used_at')
    with _sqlite_copy('school'), op.batch_alter_table('school', schema=None) as batch_op:
        batch_op.drop_column('address')
        batch_op.drop_column('timezone')


@contextmanager
def _sqlite_copy(table):
    """On SQLite, let batch mode copy ``table`` with foreign keys off and its indexes kept.

    ``PRAGMA foreign_keys`` is a no-op inside a transaction: what came before is committed (SQLite
    commits a migration that runs past this revision anyway) and a new one begun. Batch mode
    cannot reflect an index on an expression (``lower(sis_id)``): each index the copy lost is
    made again from the SQL SQLite kept for it.
    """
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        yield
        return
    indexes = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,),
    ).fetchall()
    op.execute('COMMIT')
    op.execute('PRAGMA foreign_keys=OFF')
    op.execute('BEGIN IMMEDIATE')
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=_EXPRESSION_INDEX)
            yield
        kept = {
            name
            for (name,) in bind.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
            )
        }
        for name, sql in indexes:
            if name not in kept:
                op.execute(sql)
        broken = bind.exec_driver_sql('PRAGMA foreign_key_check').fetchall()
        if broken:
            raise RuntimeError(f'foreign keys broken by the copy of {table}: {broken[:5]}')
    except BaseException:
        op.execute('ROLLBACK')
        raise
    else:
        op.execute('COMMIT')
    finally:
        op.execute('PRAGMA foreign_keys=ON')
        op.execute('BEGIN IMMEDIATE')
