"""Subscriptions: a renewing service per line (a pool later), its calendar, period, auto-renew mode, status and
dunning stage; the dunning policy of each organisation

Revision ID: 0014
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("company_id", sa.String(32), nullable=False),
        sa.Column("line_id", sa.String(32), nullable=True),
        sa.Column("pool_id", sa.String(32), nullable=True),
        sa.Column("end_user_id", sa.String(32), nullable=True),
        sa.Column("plan_id", sa.String(32), nullable=False),
        sa.Column("next_plan_id", sa.String(32), nullable=True),
        sa.Column("anchor_on", sa.Date(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("next_renewal_on", sa.Date(), nullable=False),
        sa.Column("auto_renew_mode", sa.String(32), nullable=False),
        sa.Column("payment_method", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dunning_stage", sa.String(32), nullable=True),
        sa.Column("dunning_since", sa.Date(), nullable=True),
        sa.Column("workflow_id", sa.String(200), nullable=False),
        sa.Column("last_failure", sa.Text(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("(line_id IS NULL) <> (pool_id IS NULL)", name=op.f("ck_subscriptions_one_owner")),
        sa.CheckConstraint(
            "period >= 0 AND validity_days >= 1", name=op.f("ck_subscriptions_period_and_validity")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_subscriptions_org_id_organisations")),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_subscriptions_company_id_companies")),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_subscriptions_line_id_lines")),
        sa.ForeignKeyConstraint(["pool_id"], ["pools.id"], name=op.f("fk_subscriptions_pool_id_pools")),
        sa.ForeignKeyConstraint(["end_user_id"], ["end_users.id"], name=op.f("fk_subscriptions_end_user_id_end_users")),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_subscriptions_plan_id_plans")),
        sa.ForeignKeyConstraint(["next_plan_id"], ["plans.id"], name=op.f("fk_subscriptions_next_plan_id_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("line_id", name=op.f("uq_subscriptions_line_id")),
        sa.UniqueConstraint("pool_id", name=op.f("uq_subscriptions_pool_id")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_subscriptions_workflow_id")),
    )
    op.create_index(op.f("ix_subscriptions_org_id"), "subscriptions", ["org_id"])
    op.create_index(op.f("ix_subscriptions_company_id"), "subscriptions", ["company_id"])
    op.create_index(op.f("ix_subscriptions_next_renewal_on"), "subscriptions", ["next_renewal_on"])
    op.create_index("ix_subscriptions_org_status", "subscriptions", ["org_id", "status"])
    op.create_table(
        "dunning_policies",
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("retry_until_day", sa.Integer(), nullable=False),
        sa.Column("second_attempt_until_day", sa.Integer(), nullable=False),
        sa.Column("suspension_until_day", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "retry_until_day >= 1 AND second_attempt_until_day > retry_until_day "
            "AND suspension_until_day > second_attempt_until_day",
            name=op.f("ck_dunning_policies_stages_in_order"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_dunning_policies_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_dunning_policies")),
    )


def downgrade() -> None:
    op.drop_table("dunning_policies")
    op.drop_index("ix_subscriptions_org_status", table_name="subscriptions")
    op.drop_index(op.f("ix_subscriptions_next_renewal_on"), table_name="subscriptions")
    op.drop_index(op.f("ix_subscriptions_company_id"), table_name="subscriptions")
    op.drop_index(op.f("ix_subscriptions_org_id"), table_name="subscriptions")
    op.drop_table("subscriptions")
