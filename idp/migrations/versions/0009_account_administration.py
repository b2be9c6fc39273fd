"""accounts that staff disable, expire, or give a temporary password that expires

The reason staff gave for disabling an account is kept with it (the audit trail is pruned after
the retention time; the reason is needed as long as the account stays disabled). A temporary
password has an end. Accounts are found by ``lower(email)`` (sign-in by address, forgot
username), so the index on the address is on that expression. The worker finds the accounts
that expired in the last day through an index on ``expires_at`` and ends their sessions.

Revision ID: 0009_account_administration
Revises: 0008_database_counters
Create Date: 2026-12-07 12:00:00

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009_account_administration'
down_revision = '0008_database_counters'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('temporary_password_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disabled_reason', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_account_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index('ix_account_email_lower', [sa.text('lower(email)')], unique=False)
        batch_op.drop_index(batch_op.f('ix_account_email'))


def downgrade():
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_email'), ['email'], unique=False)
        batch_op.drop_index('ix_account_email_lower')
        batch_op.drop_index(batch_op.f('ix_account_expires_at'))
        batch_op.drop_column('disabled_reason')
        batch_op.drop_column('temporary_password_expires_at')
