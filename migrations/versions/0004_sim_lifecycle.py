"""SIM lifecycle: number ranges, activations, bulk operations (issue: SIM lifecycle)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("supplier_offer_code", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("purchase_price_minor", sa.BigInteger(), nullable=False, server_default="0"))

    with op.batch_alter_table("sim_cards") as batch:
        batch.add_column(sa.Column("reserved_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("rule_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch.create_index("ix_sim_cards_reserved_by", ["reserved_by"], unique=False)

    with op.batch_alter_table("lines") as batch:
        batch.add_column(sa.Column("activation_workflow_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("termination_workflow_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("termination_scheduled_for", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failure_reason", sa.Text(), nullable=True))

    op.create_table(
        "number_ranges",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("first_msisdn", sa.String(length=20), nullable=False),
        sa.Column("last_msisdn", sa.String(length=20), nullable=False),
        sa.Column("carrier", sa.String(length=50), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name="fk_number_ranges_org_id_organisations"),
        sa.PrimaryKeyConstraint("id", name="pk_number_ranges"),
        sa.UniqueConstraint("org_id", "first_msisdn", name="uq_number_ranges_org_id_first_msisdn"),
    )
    op.create_index("ix_number_ranges_org_id", "number_ranges", ["org_id"], unique=False)

    op.create_table(
        "phone_numbers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("msisdn", sa.String(length=20), nullable=False),
        sa.Column("range_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.Enum(
            "reserved", "assigned", "quarantined", "available",
            name="phonenumberstatus", native_enum=False, create_constraint=False, length=32,
        ), nullable=False),
        sa.Column("ported_in", sa.Boolean(), nullable=False),
        sa.Column("reservation_key", sa.String(length=200), nullable=True),
        sa.Column("line_id", sa.String(length=32), nullable=True),
        sa.Column("quarantine_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name="fk_phone_numbers_org_id_organisations"),
        sa.ForeignKeyConstraint(["range_id"], ["number_ranges.id"], name="fk_phone_numbers_range_id_number_ranges"),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name="fk_phone_numbers_line_id_lines"),
        sa.PrimaryKeyConstraint("id", name="pk_phone_numbers"),
        sa.UniqueConstraint("msisdn", name="uq_phone_numbers_msisdn"),
    )
    op.create_index("ix_phone_numbers_org_id", "phone_numbers", ["org_id"], unique=False)
    op.create_index("ix_phone_numbers_reservation_key", "phone_numbers", ["reservation_key"], unique=False)

    op.create_table(
        "line_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("line_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name="fk_line_changes_line_id_lines"),
        sa.PrimaryKeyConstraint("id", name="pk_line_changes"),
    )
    op.create_index("ix_line_changes_line_id", "line_changes", ["line_id"], unique=False)

    op.create_table(
        "sim_imports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name="fk_sim_imports_org_id_organisations"),
        sa.PrimaryKeyConstraint("id", name="pk_sim_imports"),
        sa.UniqueConstraint("batch", name="uq_sim_imports_batch"),
    )
    op.create_index("ix_sim_imports_org_id", "sim_imports", ["org_id"], unique=False)

    op.create_table(
        "bulk_operations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("company_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.Enum(
            "activate", "suspend", "resume", "change_plan", "send_sms", "edit_note", "refresh_usage",
            "set_rules", "assign_company", "unassign_company", "set_tags", "cancel_sim", "import_details",
            name="bulkoperationkind", native_enum=False, create_constraint=False, length=32,
        ), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.Enum(
            "running", "completed", "cancelled",
            name="bulkoperationstatus", native_enum=False, create_constraint=False, length=32,
        ), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name="fk_bulk_operations_org_id_organisations"),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name="fk_bulk_operations_company_id_companies"),
        sa.PrimaryKeyConstraint("id", name="pk_bulk_operations"),
        sa.UniqueConstraint("workflow_id", name="uq_bulk_operations_workflow_id"),
    )
    op.create_index("ix_bulk_operations_org_id", "bulk_operations", ["org_id"], unique=False)
    op.create_index("ix_bulk_operations_company_id", "bulk_operations", ["company_id"], unique=False)

    op.create_table(
        "bulk_operation_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bulk_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("iccid", sa.String(length=20), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.Enum(
            "pending", "succeeded", "failed", "skipped",
            name="bulkitemstatus", native_enum=False, create_constraint=False, length=32,
        ), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.Column("line_id", sa.String(length=32), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bulk_id"], ["bulk_operations.id"], name="fk_bulk_operation_items_bulk_id_bulk_operations"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bulk_operation_items"),
        sa.UniqueConstraint("bulk_id", "iccid", name="uq_bulk_operation_items_bulk_id_iccid"),
    )
    op.create_index("ix_bulk_operation_items_bulk_id", "bulk_operation_items", ["bulk_id"], unique=False)

    op.create_table(
        "sim_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("sim_id", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=250), nullable=False),
        sa.Column("text", sa.String(length=640), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name="fk_sim_messages_org_id_organisations"),
        sa.ForeignKeyConstraint(["sim_id"], ["sim_cards.id"], name="fk_sim_messages_sim_id_sim_cards"),
        sa.PrimaryKeyConstraint("id", name="pk_sim_messages"),
        sa.UniqueConstraint("reference", name="uq_sim_messages_reference"),
    )
    op.create_index("ix_sim_messages_org_id", "sim_messages", ["org_id"], unique=False)
    op.create_index("ix_sim_messages_sim_id", "sim_messages", ["sim_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sim_messages_sim_id", table_name="sim_messages")
    op.drop_index("ix_sim_messages_org_id", table_name="sim_messages")
    op.drop_table("sim_messages")
    op.drop_index("ix_bulk_operation_items_bulk_id", table_name="bulk_operation_items")
    op.drop_table("bulk_operation_items")
    op.drop_index("ix_bulk_operations_company_id", table_name="bulk_operations")
    op.drop_index("ix_bulk_operations_org_id", table_name="bulk_operations")
    op.drop_table("bulk_operations")
    op.drop_index("ix_sim_imports_org_id", table_name="sim_imports")
    op.drop_table("sim_imports")
    op.drop_index("ix_line_changes_line_id", table_name="line_changes")
    op.drop_table("line_changes")
    op.drop_index("ix_phone_numbers_reservation_key", table_name="phone_numbers")
    op.drop_index("ix_phone_numbers_org_id", table_name="phone_numbers")
    op.drop_table("phone_numbers")
    op.drop_index("ix_number_ranges_org_id", table_name="number_ranges")
    op.drop_table("number_ranges")

    with op.batch_alter_table("lines") as batch:
        batch.drop_column("failure_reason")
        batch.drop_column("terminated_at")
        batch.drop_column("termination_scheduled_for")
        batch.drop_column("termination_workflow_id")
        batch.drop_column("activation_workflow_id")

    with op.batch_alter_table("sim_cards") as batch:
        batch.drop_index("ix_sim_cards_reserved_by")
        batch.drop_column("rule_ids")
        batch.drop_column("reserved_by")

    with op.batch_alter_table("plans") as batch:
        batch.drop_column("purchase_price_minor")
        batch.drop_column("supplier_offer_code")
