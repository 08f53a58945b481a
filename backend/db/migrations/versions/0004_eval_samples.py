"""evaluation samples: greedy answers to a job's fixed validation prompts at each evaluation

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00

Written by backend/jobs/progress.py (add_samples) through the training job's progress sink, read by
backend/jobs/samples.py for the Monitor, Compare runs and the model page.
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'eval_samples',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('prompt_index', sa.Integer(), nullable=False),
        sa.Column('question', sa.Text(), nullable=False),
        sa.Column('prompt', sa.Text(), nullable=False),
        sa.Column('reference', sa.Text(), nullable=False),
        sa.Column('answer', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['training_jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job_id', 'step', 'prompt_index',
                            name='uq_eval_samples_job_step_prompt'))


def downgrade() -> None:
    op.drop_table('eval_samples')
