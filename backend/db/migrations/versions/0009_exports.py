"""Model exports (issue 24): merged / GGUF / Ollama exports of a trained adapter

Revision ID: 0009_exports
Revises: 0008_sample_facts
Create Date: 2026-12-07 03:30:00

Written and read by backend/exports/service.py; the files live in the object store under
``exports/{model_id}/{export_id}/``.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009_exports'
down_revision = '0008_sample_facts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'model_exports',
        sa.Column('id', sa.String(length=36), primary_key=True),
        sa.Column('model_id', sa.String(length=36),
                  sa.ForeignKey('model_artifacts.id', ondelete='CASCADE'), nullable=False),
        sa.Column('user_id', sa.String(length=36), sa.ForeignKey('users.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('format', sa.String(length=20), nullable=False),
        sa.Column('quant', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('progress', sa.Float(), nullable=False),
        sa.Column('stage', sa.String(length=200), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('prefix', sa.String(length=1024), nullable=True),
        sa.Column('files', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
        sa.Column('ray_submission_id', sa.String(length=128), nullable=True),
        sa.Column('seconds', sa.Float(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_exports_model', 'model_exports', ['model_id', 'format', 'quant'])


def downgrade() -> None:
    op.drop_index('ix_exports_model', table_name='model_exports')
    op.drop_table('model_exports')
