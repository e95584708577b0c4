"""Feedback: a department column wide enough for a joint dispatch (会办), which names the lead and
its co-departments in it (市残联；市住建局；…): 100 characters, one name's width, refused a
dispatcher's joint dispatch of a dozen departments.

The downgrade refuses, naming them, rows whose department is longer than the old width: cut, a
joint dispatch would lose co-departments without a word (and PostgreSQL refuses the narrower
column anyway). Nothing is changed then.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_CHARS = 100  # revision 0001's width
NEW_CHARS = 1000  # serve.db.MAX_DEPARTMENTS_CHARS at this revision
IDS_NAMED = 10  # rows a refused downgrade names; the rest are counted


def upgrade() -> None:
    # SQLite keeps no width, but batch mode copies the table so that its declared type is the
    # new one too (what a fresh database gets); PostgreSQL widens the column in place.
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column(
            "department",
            type_=sa.String(NEW_CHARS),
            existing_type=sa.String(OLD_CHARS),
            existing_nullable=False,
        )


def downgrade() -> None:
    too_long = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT id FROM feedback WHERE length(department) > :width ORDER BY id"
            ).bindparams(width=OLD_CHARS)
        )
        .scalars()
        .all()
    )
    if too_long:
        named = ", ".join(str(i) for i in too_long[:IDS_NAMED])
        more = f" and {len(too_long) - IDS_NAMED} more" if len(too_long) > IDS_NAMED else ""
        one = len(too_long) == 1
        rows = f"{len(too_long)} feedback row{'' if one else 's'}"
        raise ValueError(
            f"{rows} (id {named}{more}) {'names' if one else 'name'} a department longer than {OLD_CHARS} characters "
            f"(a joint dispatch of many departments), which the column of revision 0002 cannot "
            f"hold; cut, they would lose co-departments: export them first (GET /v1/feedback), "
            f"then shorten or delete them (UPDATE feedback SET department = … WHERE id = …), or "
            f"keep this paidan; nothing was changed"
        )
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column(
            "department",
            type_=sa.String(OLD_CHARS),
            existing_type=sa.String(NEW_CHARS),
            existing_nullable=False,
        )
