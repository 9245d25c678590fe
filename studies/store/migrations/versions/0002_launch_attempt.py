"""The study's launch counter: how many times its driver was submitted (0 = never).

The lifecycle (``studies.lifecycle``) names each launch's Ray job after it; before this column
the counter was parsed back out of the last job id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sens_studies") as batch:
        batch.add_column(
            sa.Column("launch_attempt", sa.Integer(), nullable=False, server_default="0")
        )
    # Studies launched before this column: their last job id was "<slug>-<id>" for the first
    # launch and "<slug>-<id>-r<n>" for the n-th resume, so n + 1 launches happened.
    studies = sa.table("sens_studies", sa.column("id"), sa.column("ray_job_id"),
                       sa.column("launch_attempt"))  # fmt: skip
    connection = op.get_bind()
    launched = connection.execute(
        sa.select(studies.c.id, studies.c.ray_job_id).where(studies.c.ray_job_id.is_not(None))
    ).all()
    for study_id, job_id in launched:
        match = re.search(r"-r(\d+)$", job_id)
        count = int(match.group(1)) + 1 if match else 1
        connection.execute(
            studies.update().where(studies.c.id == study_id).values(launch_attempt=count)
        )


def downgrade() -> None:
    with op.batch_alter_table("sens_studies") as batch:
        batch.drop_column("launch_attempt")
