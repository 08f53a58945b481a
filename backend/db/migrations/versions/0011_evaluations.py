"""evaluations: a trained adapter scored on a ready dataset (base vs adapter loss, greedy answers
scored against the references), ``brightrun models evaluate`` / the Models page's Evaluate action

Revision ID: 0011_evaluations
Revises: 0009_exports
Create Date: 2026-12-07 03:40:00

Written by backend/evaluations/service.py (the Ray job ray_jobs/evaluate_model.py reports through it).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011_evaluations'
down_revision = '0009_exports'
branch_labels = None
depends_on = None


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'evaluations',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('model_id', sa.String(length=36), nullable=False),
        sa.Column('dataset_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('max_answers', sa.Integer(), nullable=False),
        sa.Column('external_job_id', sa.String(length=120), nullable=True),
        sa.Column('error_message', sa.Text(), nullable=True),
        sa.Column('base_loss', sa.Float(), nullable=True),
        sa.Column('adapter_loss', sa.Float(), nullable=True),
        sa.Column('conversations', sa.Integer(), nullable=True),
        sa.Column('scores', _json(), nullable=True),
        sa.Column('answers', _json(), nullable=True),
        sa.Column('timings', _json(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_id'], ['model_artifacts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_evaluations_model_created', 'evaluations', ['model_id', 'created_at'])
    op.create_index('ix_evaluations_dataset', 'evaluations', ['dataset_id'])
    op.create_index('ix_evaluations_user_status', 'evaluations', ['user_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_evaluations_user_status', table_name='evaluations')
    op.drop_index('ix_evaluations_dataset', table_name='evaluations')
    op.drop_index('ix_evaluations_model_created', table_name='evaluations')
    op.drop_table('evaluations')
