"""Shared fixtures: a store on SQLite or PostgreSQL with the small test city, and a Redis."""
from __future__ import annotations

import contextlib

import pytest
import redis as redis_lib

from backend.services import cases, seed
from backend.services.context import Context, use
from backend.store.db import migrate
from tests import support

REDIS_TEST_URL = "redis://127.0.0.1:6379/2"


def build_context(tmp_path, database_url: str, redis_url: str = REDIS_TEST_URL) -> Context:
    ctx = Context.from_config(support.make_config(tmp_path, database_url, redis_url))
    use(ctx)
    migrate(ctx.engine)
    seed.seed_city(support.small_city())
    return ctx


@contextlib.contextmanager
def store_context(db: str, tmp_path, redis_url: str = REDIS_TEST_URL):
    """A migrated, seeded store on `db` ("sqlite" or "postgresql", a fresh schema), with a flushed Redis db."""
    r = redis_lib.Redis.from_url(redis_url)
    r.flushdb()
    schema = None
    if db == "sqlite":
        url = f"sqlite:///{tmp_path / 'citywall.db'}"
    else:
        url, schema = support.pg_url_with_schema()
    ctx = build_context(tmp_path, url, redis_url)
    try:
        yield ctx
    finally:
        ctx.outbox.stop()
        ctx.close()
        use(None)
        if schema:
            support.drop_schema(schema)
        r.flushdb()
        r.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A migrated, seeded store on each database, with the real Redis (db 2, flushed)."""
    with store_context(request.param, tmp_path) as ctx:
        yield ctx


@pytest.fixture
def sqlite_store(tmp_path):
    with store_context("sqlite", tmp_path) as ctx:
        yield ctx


def actor(role: str, department_code: str | None = None):
    from backend.domain.lifecycle import Actor
    from backend.services.context import current

    dept_id = None
    if department_code:
        dept_id = next(d["id"] for d in current().departments.values() if d["code"] == department_code)
    return Actor(role if not department_code else f"dept_{department_code}", role, dept_id)


def new_case(source: str = "inspector", class_code: str = "E0102", at=None, **extra) -> dict:
    lat, lon = support.inside()
    who = {"inspector": "inspector", "public": "operator", "hotline": "operator"}.get(source, "operator")
    data = {"class_code": class_code, "lat": lat, "lon": lon, "description": "路边堆放垃圾", "source": source}
    data.update(extra)
    return cases.create(data, actor(who), at=at)
