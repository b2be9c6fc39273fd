"""the district console: staff with roles, schools and a second factor; emulation; admin clients

Staff are accounts of type ``staff`` with a ``staff_member`` row (role, the TOTP secret encrypted,
the last time step accepted), the schools a school admin manages, hashed backup codes and console
sessions of their own. An OP session held by a staff member as a parent says who, why and until
when, and the codes and token families issued from it name the staff member (the ``act`` claim).
An admin API client has a scope and, if limited, its schools. A "reset all passwords" run keeps
its place, so that it resumes.

Revision ID: 0010_staff_console
Revises: 0009_account_administration
Create Date: 2026-12-07 04:57:54.313803

"""
import warnings

import sqlalchemy as sa
from alembic import op

# The foreign key to account makes SQLite's batch mode reflect that table, and SQLAlchemy says it
# cannot reflect its lower(email) index; only op_session is rebuilt, so nothing is lost.
_EXPRESSION_INDEX = "Skipped unsupported reflection of expression-based index"


# revision identifiers, used by Alembic.
revision = '0010_staff_console'
down_revision = '0009_account_administration'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('password_reset_run',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('started_by', sa.String(length=64), nullable=False),
    sa.Column('cutoff', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_account_id', sa.String(length=32), nullable=False),
    sa.Column('touched', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_reset_run'))
    )
    op.create_table('admin_client_school',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('school_id', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_client.client_id'], name=op.f('fk_admin_client_school_client_id_oauth_client'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['school_id'], ['school.id'], name=op.f('fk_admin_client_school_school_id_school'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('client_id', 'school_id', name=op.f('pk_admin_client_school'))
    )
    op.create_table('staff_member',
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.Enum('district-admin', 'school-admin', 'help-desk', name='staffrole', native_enum=False, length=16), nullable=False),
    sa.Column('totp_secret', sa.Text(), nullable=True),
    sa.Column('totp_confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('totp_last_step', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_staff_member_account_id_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_staff_member'))
    )
    op.create_table('staff_session',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('password_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('second_factor_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ip_address', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_staff_session_account_id_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_session')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_staff_session_token_hash'))
    )
    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_session_account_id'), ['account_id'], unique=False)

    op.create_table('staff_backup_code',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_member.account_id'], name=op.f('fk_staff_backup_code_account_id_staff_member'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_backup_code'))
    )
    with op.batch_alter_table('staff_backup_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_backup_code_account_id'), ['account_id'], unique=False)

    op.create_table('staff_school',
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('school_id', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_member.account_id'], name=op.f('fk_staff_school_account_id_staff_member'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['school_id'], ['school.id'], name=op.f('fk_staff_school_school_id_school'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'school_id', name=op.f('pk_staff_school'))
    )
    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_staff_id', sa.String(length=32), nullable=True))

    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('admin_scope', sa.String(length=16), nullable=True))

    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=_EXPRESSION_INDEX)
        with op.batch_alter_table('op_session', schema=None) as batch_op:
            batch_op.add_column(sa.Column('emulated_by', sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column('emulation_reason', sa.String(length=200), nullable=True))
            batch_op.add_column(sa.Column('emulation_ends_at', sa.DateTime(timezone=True), nullable=True))
            batch_op.create_foreign_key(batch_op.f('fk_op_session_emulated_by_account'), 'account', ['emulated_by'], ['id'], ondelete='CASCADE')

    with op.batch_alter_table('refresh_token_family', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_staff_id', sa.String(length=32), nullable=True))



def downgrade():
    with op.batch_alter_table('refresh_token_family', schema=None) as batch_op:
        batch_op.drop_column('acting_staff_id')

    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=_EXPRESSION_INDEX)
        with op.batch_alter_table('op_session', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('fk_op_session_emulated_by_account'), type_='foreignkey')
            batch_op.drop_column('emulation_ends_at')
            batch_op.drop_column('emulation_reason')
            batch_op.drop_column('emulated_by')

    with op.batch_alter_table('oauth_client', schema=None) as batch_op:
        batch_op.drop_column('admin_scope')

    with op.batch_alter_table('authorization_code', schema=None) as batch_op:
        batch_op.drop_column('acting_staff_id')

    op.drop_table('staff_school')
    with op.batch_alter_table('staff_backup_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_backup_code_account_id'))

    op.drop_table('staff_backup_code')
    with op.batch_alter_table('staff_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_session_account_id'))

    op.drop_table('staff_session')
    op.drop_table('staff_member')
    op.drop_table('admin_client_school')
    op.drop_table('password_reset_run')
