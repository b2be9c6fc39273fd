"""search shortcuts: a school admin's reach from the links alone, and test accounts in order

A guardian link carries its student's school (``guardian_link.school_id``), kept right by the
database: the link's (student_id, school_id) references the student's (id, school_id) with ON
UPDATE CASCADE, so a student who moves school moves their links with them. A school admin's reach
is then read from ``ix_guardian_link_school_id_account_id`` alone. ``(id, school_id)`` of
a student becomes unique so that it can be referenced (it is, since ``id`` is). Test accounts get
their own partial index in the search's order. See idp/admin/search.py and docs/performance.md.

Revision ID: 0015_search_shortcuts
Revises: 0014_rosters
Create Date: 2026-12-07 08:00:00.000000

"""

import warnings

import sqlalchemy as sa
from alembic import op

# SQLite's batch mode reflects the tables the links reference, and SQLAlchemy says it cannot
# reflect their lower(...) indexes; only guardian_link is rebuilt, so nothing is lost.
_EXPRESSION_INDEX = "Skipped unsupported reflection of expression-based index"


# revision identifiers, used by Alembic.
revision = "0015_search_shortcuts"
down_revision = "0014_rosters"
branch_labels = None
depends_on = None

TEST_ORDER = sa.text("is_test_account")


def upgrade():
    op.drop_index("ix_student_id_school_id", table_name="student")
    op.create_index("ix_student_id_school_id", "student", ["id", "school_id"], unique=True)
    op.add_column("guardian_link", sa.Column("school_id", sa.String(length=32), nullable=True))
    op.execute(
        "UPDATE guardian_link SET school_id = "
        "(SELECT student.school_id FROM student WHERE student.id = guardian_link.student_id)"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EXPRESSION_INDEX)
        with op.batch_alter_table("guardian_link", schema=None) as batch_op:
            batch_op.alter_column("school_id", existing_type=sa.String(length=32), nullable=False)
            batch_op.drop_constraint("fk_guardian_link_student_id_student", type_="foreignkey")
            batch_op.create_foreign_key(
                "fk_guardian_link_student_id_student",
                "student",
                ["student_id", "school_id"],
                ["id", "school_id"],
                ondelete="CASCADE",
                onupdate="CASCADE",
            )
            batch_op.create_index("ix_guardian_link_school_id_account_id", ["school_id", "account_id"])
    op.create_index(
        "ix_account_test_order",
        "account",
        ["last_name", "first_name", "id"],
        postgresql_where=TEST_ORDER,
        sqlite_where=TEST_ORDER,
    )


def downgrade():
    op.drop_index("ix_account_test_order", table_name="account")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EXPRESSION_INDEX)
        with op.batch_alter_table("guardian_link", schema=None) as batch_op:
            batch_op.drop_index("ix_guardian_link_school_id_account_id")
            batch_op.drop_constraint("fk_guardian_link_student_id_student", type_="foreignkey")
            batch_op.create_foreign_key(
                "fk_guardian_link_student_id_student", "student", ["student_id"], ["id"], ondelete="CASCADE"
            )
            batch_op.drop_column("school_id")
    op.drop_index("ix_student_id_school_id", table_name="student")
    op.create_index("ix_student_id_school_id", "student", ["id", "school_id"], unique=False)
