"""the outbox keeps one position (the last event id on the bus) instead of marking every event row

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 01:30:00

Event ids follow the chain head, so they are committed in id order without gaps: "published up to id N"
says everything the per-row `published_at` said, and the relay no longer rewrites every event row it sends
(on PostgreSQL each such UPDATE wrote a new row version and new entries in the table's indexes).
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'outbox_position',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('last_event_id', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    # everything before the oldest unpublished row is on the bus (none unpublished: all of them)
    op.execute("INSERT INTO outbox_position (id, last_event_id) SELECT 1, COALESCE("
               "(SELECT MIN(id) - 1 FROM events WHERE published_at IS NULL), (SELECT MAX(id) FROM events), 0)")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_unpublished', sqlite_where=sa.text('published_at IS NULL'),
                            postgresql_where=sa.text('published_at IS NULL'))
        batch_op.drop_column('published_at')


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_events_unpublished', ['id'], unique=False,
                              sqlite_where=sa.text('published_at IS NULL'),
                              postgresql_where=sa.text('published_at IS NULL'))
    op.execute("UPDATE events SET published_at = created_at "
               "WHERE id <= (SELECT last_event_id FROM outbox_position WHERE id = 1)")
    op.drop_table('outbox_position')
