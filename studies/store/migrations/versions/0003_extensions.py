"""The study's extension history: one entry per extension (``studies.extension``: when, what it
added, how many trials it added and reused); ``[]`` for a study never extended.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the server default fills the rows of every study made before this column
    with op.batch_alter_table("sens_studies") as batch:
        batch.add_column(
            sa.Column("extensions", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("sens_studies") as batch:
        batch.drop_column("extensions")
