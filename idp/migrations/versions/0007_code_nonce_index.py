"""authorization codes found by (client, nonce) through an index

Authlib asks whether a client already has a code with a nonce (a replayed authentication
request) three times per flow; with only client_id indexed, that scanned every code the client
had (used ones are kept for the retention time). The index on (client_id, nonce) answers it
directly, and serves the foreign key's look-ups by client_id as the old index did.

Revision ID: 0007_code_nonce_index
Revises: 0006_backchannel_retry
Create Date: 2026-12-07 10:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007_code_nonce_index'
down_revision = '0006_backchannel_retry'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.create_index('ix_authorization_code_client_id_nonce', ['client_id', 'nonce'], unique=False)
        batch_op.drop_index(batch_op.f('ix_authorization_code_client_id'))


def downgrade():
    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_authorization_code_client_id'), ['client_id'], unique=False)
        batch_op.drop_index('ix_authorization_code_client_id_nonce')
