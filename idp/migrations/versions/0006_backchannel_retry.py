"""back-channel logout deliveries to try again

Revision ID: 0006_backchannel_retry
Revises: 0005_erase_sent_mail
Create Date: 2026-12-01 16:19:44.792273

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_backchannel_retry'
down_revision = '0005_erase_sent_mail'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('backchannel_retry',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('sid', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_backchannel_retry_account_id_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], name=op.f('fk_backchannel_retry_client_id_oauth_client'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backchannel_retry'))
    )
    with op.batch_alter_table('backchannel_retry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backchannel_retry_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_backchannel_retry_next_attempt_at'), ['next_attempt_at'], unique=False)



def downgrade():
    with op.batch_alter_table('backchannel_retry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backchannel_retry_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_backchannel_retry_client_id'))

    op.drop_table('backchannel_retry')
