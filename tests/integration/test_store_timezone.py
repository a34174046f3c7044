"""PostgreSQL sessions run in UTC whatever the server's or the client's time zone: the case tables' timestamp
columns hold naive UTC, and a session in Asia/Shanghai would have stored every time 8 hours off."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text

from backend.store.db import make_engine
from tests import support


def test_sessions_are_utc_and_keep_the_urls_own_options(monkeypatch):
    monkeypatch.setenv("PGTZ", "Asia/Shanghai")  # as a server or client configured for the city would be
    url, schema = support.pg_url_with_schema()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SHOW timezone")).scalar_one() == "UTC"
            assert conn.execute(text("SELECT current_schema()")).scalar_one() == schema  # the URL's search_path
            conn.execute(text("CREATE TABLE tz_probe (at TIMESTAMP WITHOUT TIME ZONE)"))
            at = datetime(2026, 11, 26, 23, 30, tzinfo=timezone.utc)
            conn.execute(text("INSERT INTO tz_probe (at) VALUES (:at)"), {"at": at})
            stored = conn.execute(text("SELECT at FROM tz_probe")).scalar_one()
        assert stored == datetime(2026, 11, 26, 23, 30)  # naive UTC, not 2026-11-27 07:30
    finally:
        engine.dispose()
        support.drop_schema(schema)
