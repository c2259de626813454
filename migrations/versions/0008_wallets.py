"""Wallet fundings by card (issue 11 §2): one row per funding, driven by its workflow

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallet_fundings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("company_id", sa.String(length=32), nullable=False),
        sa.Column("end_user_id", sa.String(length=32), nullable=True),
        sa.Column("wallet_id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=320), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("payment_reference", sa.String(length=100), nullable=True),
        sa.Column("refund_reference", sa.String(length=100), nullable=True),
        sa.Column("ledger_reference", sa.String(length=200), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_wallet_fundings_positive_amount")),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_wallet_fundings_company_id_companies")),
        sa.ForeignKeyConstraint(
            ["end_user_id"], ["end_users.id"], name=op.f("fk_wallet_fundings_end_user_id_end_users")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_wallet_fundings_org_id_organisations")),
        sa.ForeignKeyConstraint(["wallet_id"], ["wallets.id"], name=op.f("fk_wallet_fundings_wallet_id_wallets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_fundings")),
        sa.UniqueConstraint("org_id", "idempotency_key", name=op.f("uq_wallet_fundings_org_id_idempotency_key")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_wallet_fundings_workflow_id")),
    )
    with op.batch_alter_table("wallet_fundings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wallet_fundings_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_wallet_fundings_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_wallet_fundings_wallet_id"), ["wallet_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wallet_fundings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_fundings_wallet_id"))
        batch_op.drop_index(batch_op.f("ix_wallet_fundings_org_id"))
        batch_op.drop_index(batch_op.f("ix_wallet_fundings_company_id"))

    op.drop_table("wallet_fundings")
