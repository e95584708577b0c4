"""Feedback: the client's request_id, so that a save repeated after an unknown outcome (a 503 at
the commit, a lost answer) answers the row stored the first time instead of storing it again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column is added in place on SQLite too (batch mode copies no table for it); rows
    # stored before have none, and NULLs never collide in a unique index.
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("request_id", sa.String(64), nullable=True))
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_feedback_request_id", table_name="feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("request_id")
