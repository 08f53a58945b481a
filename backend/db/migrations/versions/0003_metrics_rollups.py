"""metrics roll-ups: per-job aggregates of metric points in blocks of 64 steps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:40:00

The Monitor's chart of a long job reads one row per 64 steps instead of every point, also on the
first call of a dashboard process (backend/jobs/metrics.py). Kept by backend/jobs/progress.py in
the same transaction as the points; the upgrade fills it from the points already stored.
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BACKFILL = """
INSERT INTO metrics_rollups (job_id, block, points, step_min, step_max, loss_min, loss_max,
    lr_sum, lr_n, thr_sum, thr_n, gn_sum, gn_n, gpu_sum, gpu_n, epoch_max, ts_max, tokens_max)
SELECT job_id, step / 64, count(*), min(step), max(step), min(training_loss), max(training_loss),
    sum(learning_rate), count(learning_rate), sum(throughput), count(throughput),
    sum(gradient_norm), count(gradient_norm), sum(gpu_utilization), count(gpu_utilization),
    max(epoch), max(timestamp), max(tokens_processed)
FROM metrics_points GROUP BY job_id, step / 64
"""


def upgrade() -> None:
    op.create_table(
        'metrics_rollups',
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('block', sa.Integer(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('step_min', sa.Integer(), nullable=False),
        sa.Column('step_max', sa.Integer(), nullable=False),
        sa.Column('loss_min', sa.Float(), nullable=True),
        sa.Column('loss_max', sa.Float(), nullable=True),
        sa.Column('lr_sum', sa.Float(), nullable=True),
        sa.Column('lr_n', sa.Integer(), nullable=False),
        sa.Column('thr_sum', sa.Float(), nullable=True),
        sa.Column('thr_n', sa.Integer(), nullable=False),
        sa.Column('gn_sum', sa.Float(), nullable=True),
        sa.Column('gn_n', sa.Integer(), nullable=False),
        sa.Column('gpu_sum', sa.Float(), nullable=True),
        sa.Column('gpu_n', sa.Integer(), nullable=False),
        sa.Column('epoch_max', sa.Integer(), nullable=True),
        sa.Column('ts_max', sa.DateTime(timezone=True), nullable=True),
        sa.Column('tokens_max', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['training_jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'block'))
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table('metrics_rollups')
