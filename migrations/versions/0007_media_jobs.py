"""media_jobs: the PostgreSQL job queue of media processing (issue #20)

Workers claim a job with FOR UPDATE SKIP LOCKED and hold it by a lease; one open (queued or running) job
per media item through a partial unique index.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_jobs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("media_item_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("force", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("claim_token", sa.UUID(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_media_jobs_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["media_item_id"],
            ["media_items.id"],
            name=op.f("fk_media_jobs_media_item_id_media_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_jobs")),
    )
    op.create_index(op.f("ix_media_jobs_media_item_id"), "media_jobs", ["media_item_id"], unique=False)
    op.create_index("ix_media_jobs_status_created_at", "media_jobs", ["status", "created_at"], unique=False)
    op.create_index(
        "uq_media_jobs_open_media_item_id",
        "media_jobs",
        ["media_item_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("uq_media_jobs_open_media_item_id", table_name="media_jobs")
    op.drop_index("ix_media_jobs_status_created_at", table_name="media_jobs")
    op.drop_index(op.f("ix_media_jobs_media_item_id"), table_name="media_jobs")
    op.drop_table("media_jobs")
