"""stripe refunds ledger and the failed_permanently event status

`stripe_refunds` keeps every refund seen in Stripe per payment intent, so a refund that arrives before
its purchase's completion is applied when the completion comes, and partial refunds add up.
`failed_permanently` marks a stored event that can never apply (answered 2xx, not retried).

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-02 16:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE stripe_event_status ADD VALUE IF NOT EXISTS 'failed_permanently'")
    op.create_table(
        "stripe_refunds",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payment_intent_id", sa.Text(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("fully_refunded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_refunds")),
    )
    op.create_index(
        op.f("ix_stripe_refunds_payment_intent_id"), "stripe_refunds", ["payment_intent_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_stripe_refunds_payment_intent_id"), table_name="stripe_refunds")
    op.drop_table("stripe_refunds")
    # PostgreSQL cannot drop an enum value: rebuild the type without it.
    op.execute("UPDATE stripe_events SET status = 'failed' WHERE status = 'failed_permanently'")
    op.execute("ALTER TABLE stripe_events ALTER COLUMN status DROP DEFAULT")
    op.execute("ALTER TYPE stripe_event_status RENAME TO stripe_event_status_old")
    op.execute("CREATE TYPE stripe_event_status AS ENUM ('received', 'processed', 'ignored', 'failed')")
    op.execute(
        "ALTER TABLE stripe_events ALTER COLUMN status TYPE stripe_event_status "
        "USING status::text::stripe_event_status"
    )
    op.execute("ALTER TABLE stripe_events ALTER COLUMN status SET DEFAULT 'received'")
    op.execute("DROP TYPE stripe_event_status_old")
