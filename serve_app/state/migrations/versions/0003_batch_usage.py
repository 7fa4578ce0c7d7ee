"""A batch's token usage, summed as its lines are recorded (OpenAI's Batch `usage`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite adds columns in place, and a default fills the batches already kept
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"))
        table.add_column(sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.drop_column("output_tokens")
        table.drop_column("input_tokens")
