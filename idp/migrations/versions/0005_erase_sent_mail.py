"""erase the bodies of mail already sent or given up

Revision ID: 0005_erase_sent_mail
Revises: 0004_recovery
Create Date: 2026-12-01 16:20:00.000000

From this revision the mail worker erases a message's body once it is sent or out of attempts
(idp.mail.delivery.erase_body); this does the same for the rows written before it. Nothing in
the schema changes, and a downgrade cannot bring the words back, so it changes nothing.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_erase_sent_mail'
down_revision = '0004_recovery'
branch_labels = None
depends_on = None

# The worker's MAX_ATTEMPTS when this revision was written; a migration must not import app code.
MAX_ATTEMPTS = 30


def upgrade():
    outbound_email = sa.table(
        'outbound_email',
        sa.column('body_text', sa.Text),
        sa.column('body_html', sa.Text),
        sa.column('sent_at', sa.DateTime(timezone=True)),
        sa.column('attempts', sa.Integer),
    )
    op.execute(
        outbound_email.update()
        .where(sa.or_(outbound_email.c.sent_at.is_not(None), outbound_email.c.attempts >= MAX_ATTEMPTS))
        .values(body_text='', body_html=None)
    )


def downgrade():
    pass
