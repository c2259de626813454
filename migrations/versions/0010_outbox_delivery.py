"""Outbox relay: delivery state of notifications, security messages and SIM messages; mail attachments
(issue 11 §4)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOXES = ("notifications", "security_messages", "sim_messages")
MAILS = ("notifications", "security_messages")
# Rows written before the relay existed were never sent; they are not sent now either (stale reset links,
# old receipts): they are closed as failed with this reason (docs/decisions.md, "Outbox relay").
BEFORE_RELAY = "écrit avant le relais d'envoi (migration 0010) : non envoyé"


def upgrade() -> None:
    for table in OUTBOXES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
            batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
            batch.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
            batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
            if table in MAILS:
                batch.add_column(sa.Column("attachment_kind", sa.String(length=32), nullable=True))
                batch.add_column(sa.Column("attachment_ref", sa.String(length=64), nullable=True))
        op.create_index(f"ix_{table}_pending", table, ["sent_at", "failed_at", "id"], unique=False)
        values = {"failed_at": sa.func.now(), "last_error": BEFORE_RELAY}
        if table == "sim_messages":
            values["status"] = "failed"
        op.execute(sa.table(table, *(sa.column(name) for name in values)).update().values(**values))


def downgrade() -> None:
    for table in OUTBOXES:
        op.drop_index(f"ix_{table}_pending", table_name=table)
        with op.batch_alter_table(table) as batch:
            if table in MAILS:
                batch.drop_column("attachment_ref")
                batch.drop_column("attachment_kind")
            for column in ("claimed_until", "claim_token", "last_error", "attempts", "failed_at", "sent_at"):
                batch.drop_column(column)
