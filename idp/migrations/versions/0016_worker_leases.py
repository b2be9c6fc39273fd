"""the worker: a lease on each outbox message, and a Message-ID kept across attempts

A worker takes a due message by writing ``leased_until`` and ``lease_owner`` in one short
transaction, talks SMTP with no transaction open, then records the outcome in another; any other
worker leaves a leased message alone until the lease ends (idp.mail.delivery). ``message_id`` is
made when the message is queued and sent with every attempt, so that a receiver can recognise a
copy (RFC 5322 3.6.4). Messages queued before this revision get one made from their id.

Revision ID: 0016_worker_leases
Revises: 0015_search_shortcuts
Create Date: 2026-12-07 08:20:00.000000

"""
import warnings

import sqlalchemy as sa
from alembic import op

# SQLite's batch mode reflects the account table that outbound_email references, and SQLAlchemy
# says it cannot reflect its lower(...) indexes; only outbound_email is rebuilt, so nothing is lost.
_EXPRESSION_INDEX = "Skipped unsupported reflection of expression-based index"


# revision identifiers, used by Alembic.
revision = '0016_worker_leases'
down_revision = '0015_search_shortcuts'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('outbound_email', sa.Column('message_id', sa.String(length=255), nullable=True))
    op.add_column('outbound_email', sa.Column('leased_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('outbound_email', sa.Column('lease_owner', sa.String(length=64), nullable=True))
    # The id is unique already; "||" concatenates on SQLite and PostgreSQL alike.
    op.execute("UPDATE outbound_email SET message_id = '<' || id || '.outbox@localhost>'")
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=_EXPRESSION_INDEX)
        with op.batch_alter_table('outbound_email', schema=None) as batch_op:
            batch_op.alter_column('message_id', existing_type=sa.String(length=255), nullable=False)
            batch_op.create_unique_constraint(batch_op.f('uq_outbound_email_message_id'), ['message_id'])


def downgrade():
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=_EXPRESSION_INDEX)
        with op.batch_alter_table('outbound_email', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('uq_outbound_email_message_id'), type_='unique')
            batch_op.drop_column('lease_owner')
            batch_op.drop_column('leased_until')
            batch_op.drop_column('message_id')
