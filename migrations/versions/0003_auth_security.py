"""authentication, API keys, audit and outgoing webhooks (issue: tenancy, authentication and audit)

Account security columns (lockout for end users, 2FA replay guard, token revocation), API key rotation
columns, webhook secret rotation and delivery log, audit chain head and append-only triggers, 2FA backup
codes, password reset tokens, refresh tokens, the account-security mail outbox.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("end_users") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", _tz(), nullable=True))
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("totp_enabled", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tokens_valid_after", _tz(), nullable=True))
        batch.add_column(sa.Column("last_login_at", _tz(), nullable=True))

    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("totp_enabled", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tokens_valid_after", _tz(), nullable=True))
        batch.add_column(sa.Column("last_login_at", _tz(), nullable=True))

    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("last4", sa.String(length=4), nullable=False, server_default=""))
        batch.add_column(sa.Column("created_by", sa.String(length=320), nullable=False, server_default=""))
        batch.add_column(sa.Column("replaced_by_id", sa.String(length=32), nullable=True))

    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("previous_secret_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("previous_secret_expires_at", _tz(), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(length=320), nullable=False, server_default=""))

    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("workflow_id", sa.String(length=200), nullable=True))

    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("end_user_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("actor_kind", sa.String(length=16), nullable=False, server_default="system"))
        batch.add_column(sa.Column("reference", sa.String(length=250), nullable=True))
        batch.create_unique_constraint(batch.f("uq_audit_log_reference"), ["reference"])

    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appended", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    head = sa.table(
        "audit_chain_head", sa.column("id", sa.Integer), sa.column("appended", sa.BigInteger), sa.column("last_hash")
    )
    op.bulk_insert(head, [{"id": 1, "appended": 0, "last_hash": GENESIS_HASH}])

    op.create_table(
        "backup_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_kind", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("used_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_backup_codes_code_hash")),
    )
    op.create_index("ix_backup_codes_account", "backup_codes", ["account_kind", "account_id"], unique=False)

    op.create_table(
        "password_reset_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_kind", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("expires_at", _tz(), nullable=False),
        sa.Column("used_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_reset_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_password_reset_tokens_account_id"), "password_reset_tokens", ["account_id"], unique=False
    )

    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("account_kind", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("expires_at", _tz(), nullable=False),
        sa.Column("revoked_at", _tz(), nullable=True),
        sa.Column("replaced_by", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
    )
    op.create_index(op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"], unique=False)
    op.create_index(op.f("ix_refresh_tokens_account_id"), "refresh_tokens", ["account_id"], unique=False)

    op.create_table(
        "security_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_messages")),
    )
    op.create_index(op.f("ix_security_messages_recipient"), "security_messages", ["recipient"], unique=False)

    op.create_table(
        "webhook_delivery_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", _tz(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_delivery_attempts_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery_attempts")),
        sa.UniqueConstraint(
            "delivery_id", "attempt", name=op.f("uq_webhook_delivery_attempts_delivery_id_attempt")
        ),
    )
    op.create_index(
        op.f("ix_webhook_delivery_attempts_delivery_id"), "webhook_delivery_attempts", ["delivery_id"], unique=False
    )

    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_append_only_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only_delete")


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_index(op.f("ix_webhook_delivery_attempts_delivery_id"), table_name="webhook_delivery_attempts")
    op.drop_table("webhook_delivery_attempts")
    op.drop_index(op.f("ix_security_messages_recipient"), table_name="security_messages")
    op.drop_table("security_messages")
    op.drop_index(op.f("ix_refresh_tokens_account_id"), table_name="refresh_tokens")
    op.drop_index(op.f("ix_refresh_tokens_family_id"), table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index(op.f("ix_password_reset_tokens_account_id"), table_name="password_reset_tokens")
    op.drop_table("password_reset_tokens")
    op.drop_index("ix_backup_codes_account", table_name="backup_codes")
    op.drop_table("backup_codes")
    op.drop_table("audit_chain_head")

    with op.batch_alter_table("audit_log") as batch:
        batch.drop_constraint(batch.f("uq_audit_log_reference"), type_="unique")
        batch.drop_column("reference")
        batch.drop_column("actor_kind")
        batch.drop_column("end_user_id")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("workflow_id")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("created_by")
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret_encrypted")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("replaced_by_id")
        batch.drop_column("created_by")
        batch.drop_column("last4")
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("last_login_at")
        batch.drop_column("tokens_valid_after")
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_enabled")
    with op.batch_alter_table("end_users") as batch:
        batch.drop_column("last_login_at")
        batch.drop_column("tokens_valid_after")
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_enabled")
        batch.drop_column("must_change_password")
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")
