"""top-ups, recharges and Stripe events (issue: top-up / recharge DATA)

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('stripe_events',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=100), nullable=True),
    sa.Column('topup_id', sa.String(length=32), nullable=True),
    sa.Column('routed', sa.Boolean(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events'))
    )
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_events_payment_intent_id'), ['payment_intent_id'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('company_id', sa.String(length=32), nullable=True),
    sa.Column('reference', sa.String(length=250), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_notifications_company_id_companies')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_notifications_org_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('reference', name=op.f('uq_notifications_reference'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_company_id'), ['company_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_org_id'), ['org_id'], unique=False)

    op.create_table('topups',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('company_id', sa.String(length=32), nullable=False),
    sa.Column('line_id', sa.String(length=32), nullable=False),
    sa.Column('end_user_id', sa.String(length=32), nullable=True),
    sa.Column('idempotency_key', sa.String(length=100), nullable=False),
    sa.Column('request_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=320), nullable=False),
    sa.Column('article_id', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price_minor', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('data_bytes', sa.BigInteger(), nullable=False),
    sa.Column('payment_method', sa.Enum('card', 'wallet', 'account', 'sepa', 'manual', name='paymentmethod', native_enum=False, length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('payment_status', sa.String(length=32), nullable=False),
    sa.Column('payment_reference', sa.String(length=100), nullable=True),
    sa.Column('refund_reference', sa.String(length=100), nullable=True),
    sa.Column('deployment_id', sa.String(length=32), nullable=True),
    sa.Column('workflow_id', sa.String(length=200), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('quantity >= 1 AND amount_minor >= 0', name=op.f('ck_topups_positive_amounts')),
    sa.ForeignKeyConstraint(['article_id'], ['catalogue_articles.id'], name=op.f('fk_topups_article_id_catalogue_articles')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_topups_company_id_companies')),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], name=op.f('fk_topups_deployment_id_deployments')),
    sa.ForeignKeyConstraint(['end_user_id'], ['end_users.id'], name=op.f('fk_topups_end_user_id_end_users')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_topups_line_id_lines')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_topups_org_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topups')),
    sa.UniqueConstraint('org_id', 'idempotency_key', name=op.f('uq_topups_org_id_idempotency_key')),
    sa.UniqueConstraint('workflow_id', name=op.f('uq_topups_workflow_id'))
    )
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_topups_company_id'), ['company_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_topups_line_id'), ['line_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_topups_org_id'), ['org_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('topups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_topups_org_id'))
        batch_op.drop_index(batch_op.f('ix_topups_line_id'))
        batch_op.drop_index(batch_op.f('ix_topups_company_id'))

    op.drop_table('topups')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_org_id'))
        batch_op.drop_index(batch_op.f('ix_notifications_company_id'))

    op.drop_table('notifications')
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_events_payment_intent_id'))

    op.drop_table('stripe_events')
