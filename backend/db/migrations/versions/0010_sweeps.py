"""Hyperparameter sweeps: the sweeps table, and training_jobs.sweep_id / sweep_trial for the
trials (one training job per grid point of a sweep)

Revision ID: 0010_sweeps
Revises: 0011_evaluations
Create Date: 2026-12-07 03:05:00

Written by backend/sweeps/service.py (create, cancel, reconcile) and backend/sweeps/progress.py
(the sweep's Ray job, ray_jobs/sweep.py).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0010_sweeps'
down_revision = '0011_evaluations'
branch_labels = None
depends_on = None


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'sweeps',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('user_id', sa.String(36), sa.ForeignKey('users.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('dataset_id', sa.String(36), sa.ForeignKey('datasets.id', ondelete='RESTRICT'),
                  nullable=False),
        sa.Column('name', sa.String(200), nullable=True),
        sa.Column('preset_id', sa.String(20), nullable=False),
        sa.Column('grid', _json(), nullable=False),
        sa.Column('overrides', _json(), nullable=True),
        sa.Column('samples', sa.Integer(), nullable=False),
        sa.Column('max_concurrent', sa.Integer(), nullable=False),
        sa.Column('scheduler', sa.String(20), nullable=False),
        sa.Column('metric', sa.String(40), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('trial_count', sa.Integer(), nullable=False),
        sa.Column('best_job_id', sa.String(36), nullable=True),
        sa.Column('estimate', _json(), nullable=True),
        sa.Column('budget_decision', _json(), nullable=True),
        sa.Column('estimated_total_cost', sa.Float(), nullable=False),
        sa.Column('external_job_id', sa.String(120), nullable=True, unique=True),
        sa.Column('error_message', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_sweeps_user_id', 'sweeps', ['user_id'])
    # plain ADD COLUMN (an id like parent_model_id, no foreign key), never a batch copy of
    # training_jobs: on SQLite that copy drops the old table, and its ON DELETE CASCADE would
    # empty metrics_points and the roll-ups
    op.add_column('training_jobs', sa.Column('sweep_id', sa.String(36), nullable=True))
    op.add_column('training_jobs', sa.Column('sweep_trial', _json(), nullable=True))
    op.create_index('ix_training_jobs_sweep_id', 'training_jobs', ['sweep_id'])


def downgrade() -> None:
    op.drop_index('ix_training_jobs_sweep_id', 'training_jobs')
    op.drop_column('training_jobs', 'sweep_trial')  # SQLite ≥ 3.35 drops a plain column
    op.drop_column('training_jobs', 'sweep_id')
    op.drop_index('ix_sweeps_user_id', 'sweeps')
    op.drop_table('sweeps')
