"""the key set in the database, encrypted at rest

``IDP_KEYS_STORE=database`` keeps the signing keys here instead of in ``keys/`` (idp.keys.database):
one ``key_set`` row (its generation, which every change raises, and the Scrypt salt and cost of the
key-encryption key) and one ``signing_key`` row per key, its private key sealed with AES-GCM.
Nothing is copied: ``idp keys migrate-store --to database`` does that.

Revision ID: 0017_key_store
Revises: 0016_worker_leases
Create Date: 2026-12-07 10:50:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0017_key_store"
down_revision = "0016_worker_leases"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "key_set",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kdf_salt", sa.LargeBinary(length=64), nullable=False),
        sa.Column("kdf_n", sa.Integer(), nullable=False),
        sa.Column("kdf_r", sa.Integer(), nullable=False),
        sa.Column("kdf_p", sa.Integer(), nullable=False),
        sa.Column("check_nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("check_ciphertext", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_set")),
    )
    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("alg", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nonce", sa.LargeBinary(length=12), nullable=True),
        sa.Column("private_key", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("alg IN ('RS256', 'ES256')", name=op.f("ck_signing_key_alg")),
        sa.CheckConstraint(
            "state IN ('next', 'active', 'retired', 'revoked')", name=op.f("ck_signing_key_state")
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_key")),
    )


def downgrade():
    op.drop_table("signing_key")
    op.drop_table("key_set")
