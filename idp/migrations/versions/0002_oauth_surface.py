"""oauth surface: refresh-token families and tokens, session clients, sid on sessions and codes

Revision ID: 0002_oauth_surface
Revises: 0001_core
Create Date: 2026-12-01 06:41:32.421932

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_oauth_surface'
down_revision = '0001_core'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('refresh_token_family',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('authorization_code_id', sa.String(length=32), nullable=True),
    sa.Column('sid', sa.String(length=32), nullable=True),
    sa.Column('scope', sa.String(length=500), nullable=False),
    sa.Column('auth_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_refresh_token_family_account_id_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], name=op.f('fk_refresh_token_family_client_id_oauth_client'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_token_family'))
    )
    with op.batch_alter_table('refresh_token_family', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_token_family_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_token_family_authorization_code_id'), ['authorization_code_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_token_family_client_id'), ['client_id'], unique=False)

    op.create_table('refresh_token',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('family_id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['family_id'], ['refresh_token_family.id'], name=op.f('fk_refresh_token_family_id_refresh_token_family'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_token_token_hash'))
    )
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_token_family_id'), ['family_id'], unique=False)

    op.create_table('session_client',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('op_session_id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], name=op.f('fk_session_client_client_id_oauth_client'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['op_session_id'], ['op_session.id'], name=op.f('fk_session_client_op_session_id_op_session'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_session_client')),
    sa.UniqueConstraint('op_session_id', 'client_id', name=op.f('uq_session_client_op_session_id'))
    )

    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sid', sa.String(length=32), nullable=True))

    # Sessions open at upgrade time take their row id as sid, then the column becomes required.
    with op.batch_alter_table('op_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sid', sa.String(length=32), nullable=True))
    op.execute("UPDATE op_session SET sid = id WHERE sid IS NULL")
    with op.batch_alter_table('op_session', schema=None) as batch_op:
        batch_op.alter_column('sid', existing_type=sa.String(length=32), nullable=False)


def downgrade():
    with op.batch_alter_table('op_session', schema=None) as batch_op:
        batch_op.drop_column('sid')

    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.drop_column('sid')

    op.drop_table('session_client')
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_token_family_id'))

    op.drop_table('refresh_token')
    with op.batch_alter_table('refresh_token_family', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_token_family_client_id'))
        batch_op.drop_index(batch_op.f('ix_refresh_token_family_authorization_code_id'))
        batch_op.drop_index(batch_op.f('ix_refresh_token_family_account_id'))

    op.drop_table('refresh_token_family')
