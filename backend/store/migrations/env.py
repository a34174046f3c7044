"""Alembic environment: runs on the connection handed over by backend.store.db.migrate, or on DATABASE_URL."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from backend.store import all_models  # noqa: F401  (registers every table on Base.metadata)
from backend.store.base import Base

target_metadata = Base.metadata
config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from backend import config as cw_config
        from backend.store.db import normalise_url

        url = normalise_url(cw_config.load().effective_database_url)
        with create_engine(url).connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
