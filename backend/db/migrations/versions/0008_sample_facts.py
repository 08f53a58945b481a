"""evaluation samples: the reference's key fact(s) (the held-out conversation's
``metadata.key_fact``), so that "answer states the key fact" is scored where the sample is read

Revision ID: 0008_sample_facts
Revises: 0007_dpo
Create Date: 2026-12-07 02:50:00

Written by backend/jobs/progress.py (add_samples), read by backend/jobs/samples.py (scored by
backend/training/scoring.contains_fact).
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_sample_facts'
down_revision = '0007_dpo'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('eval_samples') as batch:
        batch.add_column(sa.Column('key_fact', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('eval_samples') as batch:
        batch.drop_column('key_fact')
