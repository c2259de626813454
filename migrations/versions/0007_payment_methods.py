"""Saved payment methods of companies and end users (issue 11, payment methods)

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("company_id", sa.String(length=32), nullable=False),
        sa.Column("end_user_id", sa.String(length=32), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=100), nullable=False),
        sa.Column("stripe_payment_method_id", sa.String(length=100), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name="fk_payment_methods_company_id_companies"),
        sa.ForeignKeyConstraint(["end_user_id"], ["end_users.id"], name="fk_payment_methods_end_user_id_end_users"),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name="fk_payment_methods_org_id_organisations"),
        sa.PrimaryKeyConstraint("id", name="pk_payment_methods"),
        sa.UniqueConstraint("stripe_payment_method_id", name="uq_payment_methods_stripe_payment_method_id"),
    )
    op.create_index("ix_payment_methods_company_id", "payment_methods", ["company_id"], unique=False)
    op.create_index("ix_payment_methods_end_user_id", "payment_methods", ["end_user_id"], unique=False)
    op.create_index("ix_payment_methods_org_id", "payment_methods", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_payment_methods_org_id", table_name="payment_methods")
    op.drop_index("ix_payment_methods_end_user_id", table_name="payment_methods")
    op.drop_index("ix_payment_methods_company_id", table_name="payment_methods")
    op.drop_table("payment_methods")
