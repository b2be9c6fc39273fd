"""account search: trigram and btree indexes for the console's search, and lock events by time

On PostgreSQL, ``pg_trgm`` GIN indexes answer the partial matches (email, username, "first last",
a student's SIS id); on both databases btree indexes answer the whole-value matches (first name,
last name, SIS id, all lower-cased) and the order of the pages (last name, first name, id).
``account.locked`` events are read by name and time (which accounts may be locked now), the audit
trail's pages by time, and a school admin's reach (links, then students' schools) is probed from
indexes alone.
See idp/admin/search.py.

Revision ID: 0011_account_search
Revises: 0010_staff_console
Create Date: 2026-12-07 05:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011_account_search'
down_revision = '0010_staff_console'
branch_labels = None
depends_on = None

TRIGRAM_INDEXES = {
    'ix_account_email_trgm': ('account', "lower(email)"),
    'ix_account_username_trgm': ('account', "lower(username_key)"),
    'ix_account_name_trgm': ('account', "lower(first_name || ' ' || last_name)"),
    'ix_student_sis_id_trgm': ('student', "lower(sis_id)"),
}


def upgrade():
    op.create_index('ix_account_search_order', 'account', ['last_name', 'first_name', 'id'])
    op.create_index('ix_account_first_name_lower', 'account', [sa.text('lower(first_name)')])
    op.create_index('ix_account_last_name_lower', 'account', [sa.text('lower(last_name)')])
    op.create_index('ix_student_sis_id_lower', 'student', [sa.text('lower(sis_id)')])
    op.create_index('ix_audit_event_name_occurred_at', 'audit_event', ['name', 'occurred_at'])
    op.create_index('ix_audit_event_occurred_at_id', 'audit_event', ['occurred_at', 'id'])
    op.create_index('ix_student_id_school_id', 'student', ['id', 'school_id'])
    if op.get_bind().dialect.name == 'postgresql':
        # The test and production database users may create it; a managed PostgreSQL lists
        # pg_trgm among its trusted extensions.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        for name, (table, expression) in TRIGRAM_INDEXES.items():
            op.execute(f'CREATE INDEX {name} ON {table} USING gin ({expression} gin_trgm_ops)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for name in TRIGRAM_INDEXES:
            op.execute(f'DROP INDEX IF EXISTS {name}')
    op.drop_index('ix_student_id_school_id', table_name='student')
    op.drop_index('ix_audit_event_occurred_at_id', table_name='audit_event')
    op.drop_index('ix_audit_event_name_occurred_at', table_name='audit_event')
    op.drop_index('ix_student_sis_id_lower', table_name='student')
    op.drop_index('ix_account_last_name_lower', table_name='account')
    op.drop_index('ix_account_first_name_lower', table_name='account')
    op.drop_index('ix_account_search_order', table_name='account')
