"""dashboard read indexes: validation points of a job, a user's jobs by creation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 02:20:00

- ``ix_metrics_job_val_step``: partial index on metrics_points (job_id, step) WHERE
  validation_loss IS NOT NULL — the Monitor's validation points (backend/jobs/metrics.py) without
  reading every point of the job.
- ``ix_jobs_user_created``: training_jobs (user_id, created_at) — the Jobs page's newest-first
  list (datasets and models already have theirs).

Building them reads metrics_points once and blocks writes to it meanwhile: upgrade between jobs.
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

VALIDATION = sa.text("validation_loss IS NOT NULL")


def upgrade() -> None:
    op.create_index('ix_metrics_job_val_step', 'metrics_points', ['job_id', 'step'], unique=False,
                    postgresql_where=VALIDATION, sqlite_where=VALIDATION)
    op.create_index('ix_jobs_user_created', 'training_jobs', ['user_id', 'created_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_user_created', table_name='training_jobs')
    op.drop_index('ix_metrics_job_val_step', table_name='metrics_points')
