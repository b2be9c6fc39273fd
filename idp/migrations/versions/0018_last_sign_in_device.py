"""the device of the last sign-in

``record_signin`` moves the current sign-in's device to ``last_login_device`` as it does the time
and the IP; sign-ins made before this revision have no device. Plain ``ADD``/``DROP COLUMN``
(SQLite has both) rather than batch mode, which would rebuild ``account`` and lose its
``lower(email)`` index, which SQLite cannot reflect.

Revision ID: 0018_last_sign_in_device
Revises: 0017_key_store
Create Date: 2026-12-07 10:50:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0018_last_sign_in_device'
down_revision = '0017_key_store'
branch_labels = None
depends_on = None


def upgrade():
    # "Firefox (Windows)": browser and system, never an address.
    op.add_column('account', sa.Column('last_login_device', sa.String(length=64), nullable=True))
    op.add_column('account', sa.Column('current_login_device', sa.String(length=64), nullable=True))


def downgrade():
    op.drop_column('account', 'current_login_device')
    op.drop_column('account', 'last_login_device')
