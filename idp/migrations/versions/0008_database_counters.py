"""counters in the database: Redis's fallback, and the locks that outlive Redis

While Redis does not answer, every process counts sign-in failures, Access-ID pauses and rate
limits in this table (one atomic upsert per change), so the budget stays one for the deployment;
while it answers, each lock Redis sets is written here too, so that a Redis restart lifts none.
One row per key (the same keyed-hash names Redis gets), read and written by its primary key only.

Revision ID: 0008_database_counters
Revises: 0007_code_nonce_index
Create Date: 2026-12-07 11:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_database_counters'
down_revision = '0007_code_nonce_index'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('counter_entry',
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('counted', sa.Integer(), nullable=False),
    sa.Column('count_ends', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_counter_entry'))
    )


def downgrade():
    op.drop_table('counter_entry')
