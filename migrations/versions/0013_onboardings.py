"""Integrator onboarding (seed 002): the onboardings and their dossier uploads; the organisation's
complementary settings (accounting and technical emails, technical contact, SEPA ICS) and its disabling

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("accounting_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("technical_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("technical_contact_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "onboardings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("contact_email", sa.String(length=320), nullable=False),
        sa.Column("contact_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("stage_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("needs_attention", sa.Boolean(), nullable=False),
        sa.Column("attention_reason", sa.Text(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("deposit_minor", sa.BigInteger(), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("payments", sa.JSON(), nullable=False),
        sa.Column("dossier", sa.JSON(), nullable=False),
        sa.Column("reminder_after_s", sa.Integer(), nullable=False),
        sa.Column("max_reminders", sa.Integer(), nullable=False),
        sa.Column("platform_sla_s", sa.Integer(), nullable=False),
        sa.Column("sim_batch_size", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("deposit_minor > 0 AND balance_minor >= 0", name=op.f("ck_onboardings_positive_amounts")),
        sa.CheckConstraint("reminder_after_s > 0 AND platform_sla_s > 0", name=op.f("ck_onboardings_positive_delays")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_onboardings_org_id_organisations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_onboardings")),
        sa.UniqueConstraint("org_id", name=op.f("uq_onboardings_org_id")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_onboardings_workflow_id")),
    )
    op.create_table(
        "onboarding_documents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("onboarding_id", sa.String(length=32), nullable=False),
        sa.Column("item", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.String(length=320), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["onboarding_id"], ["onboardings.id"], name=op.f("fk_onboarding_documents_onboarding_id_onboardings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_onboarding_documents")),
    )
    op.create_index(
        op.f("ix_onboarding_documents_onboarding_id"), "onboarding_documents", ["onboarding_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_onboarding_documents_onboarding_id"), table_name="onboarding_documents")
    op.drop_table("onboarding_documents")
    op.drop_table("onboardings")
    with op.batch_alter_table("organisations") as batch:
        for column in ("disabled_at", "technical_contact_name", "technical_email", "accounting_email"):
            batch.drop_column(column)
