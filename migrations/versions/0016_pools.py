"""Pools renew: a pool's plan (its price rules) and OCS account, and the lines that belong to a pool; the pool's
own price, data and currency columns (never used) give way to its plan's

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("plan_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("ocs_account", sa.String(length=64), nullable=True))
        batch.create_foreign_key(op.f("fk_pools_plan_id_plans"), "plans", ["plan_id"], ["id"])
        batch.create_unique_constraint(op.f("uq_pools_ocs_account"), ["ocs_account"])
        batch.drop_column("price_minor")
        batch.drop_column("data_bytes")
        batch.drop_column("currency")
    with op.batch_alter_table("lines") as batch:
        batch.add_column(sa.Column("pool_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key(op.f("fk_lines_pool_id_pools"), "pools", ["pool_id"], ["id"])
        batch.create_index(batch.f("ix_lines_pool_id"), ["pool_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lines") as batch:
        batch.drop_index(batch.f("ix_lines_pool_id"))
        batch.drop_constraint(op.f("fk_lines_pool_id_pools"), type_="foreignkey")
        batch.drop_column("pool_id")
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("currency", sa.String(length=3), nullable=False, server_default="EUR"))
        batch.add_column(sa.Column("data_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("price_minor", sa.BigInteger(), nullable=False, server_default="0"))
        batch.drop_constraint(op.f("uq_pools_ocs_account"), type_="unique")
        batch.drop_constraint(op.f("fk_pools_plan_id_plans"), type_="foreignkey")
        batch.drop_column("ocs_account")
        batch.drop_column("plan_id")
