"""OneRoster sourcedIds, roster guardians and guardian invitations

Schools and students brought by a OneRoster import keep the roster's ``sourcedId`` (nullable,
unique), so that a re-import finds them again. Roster guardians are people, not accounts: their
names, address, language and OneRoster role, and the students their ``agentSourcedIds`` name.
A guardian has at most one live invitation (SHA-256 of its link's token, its expiry, when it was
used and by which account) with the students it links.

The new columns are nullable with a unique index rather than a unique constraint, so SQLite
adds (and drops) them in place, without copying ``school`` or ``student``.

Revision ID: 0014_rosters
Revises: 0013_legacy_passwords
Create Date: 2026-12-07 08:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0014_rosters'
down_revision = '0013_legacy_passwords'
branch_labels = None
depends_on = None


def upgrade():
    for table in ('school', 'student'):
        op.add_column(table, sa.Column('sourced_id', sa.String(length=255), nullable=True))
        op.create_index(op.f(f'ix_{table}_sourced_id'), table, ['sourced_id'], unique=True)

    op.create_table('roster_guardian',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('sourced_id', sa.String(length=255), nullable=False),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_roster_guardian_account_id_account'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roster_guardian')),
    sa.UniqueConstraint('sourced_id', name=op.f('uq_roster_guardian_sourced_id'))
    )
    with op.batch_alter_table('roster_guardian', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roster_guardian_account_id'), ['account_id'], unique=False)

    op.create_table('roster_guardian_student',
    sa.Column('guardian_id', sa.String(length=32), nullable=False),
    sa.Column('student_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['guardian_id'], ['roster_guardian.id'], name=op.f('fk_roster_guardian_student_guardian_id_roster_guardian'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['student.id'], name=op.f('fk_roster_guardian_student_student_id_student'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('guardian_id', 'student_id', name=op.f('pk_roster_guardian_student'))
    )
    with op.batch_alter_table('roster_guardian_student', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roster_guardian_student_student_id'), ['student_id'], unique=False)

    op.create_table('guardian_invitation',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('guardian_id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_guardian_invitation_account_id_account'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['guardian_id'], ['roster_guardian.id'], name=op.f('fk_guardian_invitation_guardian_id_roster_guardian'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_guardian_invitation')),
    sa.UniqueConstraint('guardian_id', name=op.f('uq_guardian_invitation_guardian_id')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_guardian_invitation_token_hash'))
    )

    op.create_table('guardian_invitation_student',
    sa.Column('invitation_id', sa.String(length=32), nullable=False),
    sa.Column('student_id', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['invitation_id'], ['guardian_invitation.id'], name=op.f('fk_guardian_invitation_student_invitation_id_guardian_invitation'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['student_id'], ['student.id'], name=op.f('fk_guardian_invitation_student_student_id_student'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('invitation_id', 'student_id', name=op.f('pk_guardian_invitation_student'))
    )
    with op.batch_alter_table('guardian_invitation_student', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guardian_invitation_student_student_id'), ['student_id'], unique=False)


def downgrade():
    with op.batch_alter_table('guardian_invitation_student', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guardian_invitation_student_student_id'))
    op.drop_table('guardian_invitation_student')
    op.drop_table('guardian_invitation')
    with op.batch_alter_table('roster_guardian_student', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roster_guardian_student_student_id'))
    op.drop_table('roster_guardian_student')
    with op.batch_alter_table('roster_guardian', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roster_guardian_account_id'))
    op.drop_table('roster_guardian')
    for table in ('student', 'school'):
        op.drop_index(op.f(f'ix_{table}_sourced_id'), table_name=table)
        # ALTER TABLE … DROP COLUMN in place (SQLite 3.35 and later too): batch mode would copy the
        # table, and dropping the old copy with foreign keys on cascades to guardian links.
        op.execute(f'ALTER TABLE {table} DROP COLUMN sourced_id')
