"""First usage: AccountStatus file imports, first usage date and its event outbox (issue: SIM lifecycle)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sim_cards") as batch:
        batch.add_column(sa.Column("first_usage_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("first_usage_published_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            "ix_sim_cards_first_usage_pending", ["first_usage_published_at", "first_usage_at"], unique=False
        )

    op.create_table(
        "account_status_imports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("next_row", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("activated", sa.Integer(), nullable=False),
        sa.Column("unknown", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name="fk_account_status_imports_org_id_organisations"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_account_status_imports"),
        sa.UniqueConstraint("org_id", "sha256", name="uq_account_status_imports_org_id_sha256"),
    )
    op.create_index("ix_account_status_imports_org_id", "account_status_imports", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_account_status_imports_org_id", table_name="account_status_imports")
    op.drop_table("account_status_imports")

    with op.batch_alter_table("sim_cards") as batch:
        batch.drop_index("ix_sim_cards_first_usage_pending")
        batch.drop_column("first_usage_published_at")
        batch.drop_column("first_usage_at")
