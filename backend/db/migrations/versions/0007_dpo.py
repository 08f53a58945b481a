"""DPO metrics: TRL-named preference metrics of a step (rewards/chosen, rewards/rejected,
rewards/accuracies, rewards/margins and their eval_ held-out versions) on metrics_points

Revision ID: 0007_dpo
Revises: 0004
Create Date: 2026-12-06 13:45:00

Written by backend/jobs/progress.py (append_metrics) from the points of a DPO job
(ray_jobs/worker/dpo.py), read by backend/jobs/preference_metrics.py for the Monitor.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007_dpo'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('metrics_points') as batch:
        batch.add_column(sa.Column('preference', sa.JSON().with_variant(
            postgresql.JSONB(), 'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('metrics_points') as batch:
        batch.drop_column('preference')
