"""the evaluation index led by department: one range per department, no sort before aggregating

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 17:30:00
"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = ['status', 'disposed_at', 'closed_at', 'cancelled_at', 'bundle_deadline_at', 'rework_count',
           'postpone_count']


def upgrade() -> None:
    op.drop_index('ix_cases_evaluation', table_name='cases')
    op.create_index('ix_cases_evaluation', 'cases', ['department_id', 'dispatched_at', *COLUMNS])


def downgrade() -> None:
    op.drop_index('ix_cases_evaluation', table_name='cases')
    op.create_index('ix_cases_evaluation', 'cases', ['dispatched_at', 'department_id', *COLUMNS])
