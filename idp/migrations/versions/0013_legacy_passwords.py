"""legacy accounts: the salt of an imported password hash, and when the import created the account

``idp accounts import`` brings an old portal's accounts with their password hashes. The scheme
was already named by ``account.password_scheme``; a salted digest's salt waits in
``legacy_salt`` until the first sign-in re-hashes the password with argon2id and clears it.
``imported_at`` marks the accounts an import created: a later import of the same file updates
only those, never an account someone made here under the same username.

Plain ``ADD``/``DROP COLUMN`` on both databases (SQLite has both since 3.35): batch mode would
rebuild ``account`` and lose its ``lower(email)`` index, which SQLite cannot reflect.

Revision ID: 0013_legacy_passwords
Revises: 0012_schools_and_access
Create Date: 2026-12-07 08:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013_legacy_passwords'
down_revision = '0012_schools_and_access'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('account', sa.Column('legacy_salt', sa.String(length=255), nullable=True))
    op.add_column('account', sa.Column('imported_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    op.drop_column('account', 'imported_at')
    op.drop_column('account', 'legacy_salt')
