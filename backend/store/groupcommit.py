"""Group commit (组提交): the writes of many threads in one transaction, one commit.

Every case write appends to the hash chain, so writers serialise on the chain head; a commit that
waits for its WAL flush would make every other writer wait too. Here the first writer to arrive
becomes the leader: it runs every write queued meanwhile in one transaction and commits once.
Writers that arrived while it committed are served by the next leader, chosen from the head of the
queue. A lone writer leads itself: no thread hand-off, no added latency.

A write that is refused with one of `clean_errors` (the service's refusals, raised before it writes
anything) simply fails alone. Any other error aborts the transaction; the other writes of the batch
are then run again without the failed one, so nobody else pays for it.

Per transaction, `tx_state(conn)` is a dict the writes may share (the chain head is kept there and
written once per batch); `on_commit(conn, key, fn)` registers a function to run just before commit.
A write may name what it will read (`run(fn, key=…)`: the case it is about, or the counter it draws a case
number from); the leader hands the keys of the whole batch to `prefetch(conn, keys)` first, so the rows are
read (and locked) in one go instead of one round trip per write.

The leaders of a process take turns on one held connection and begin and commit on the driver
itself: a pool checkout (with PostgreSQL's liveness ping) and SQLAlchemy's transaction bookkeeping
cost more than a small write's SQL. A connection the database dropped is replaced and the batch run
again (nothing of it was committed).

On PostgreSQL every statement is a round trip to the server, and the leader would spend most of a batch
waiting for them. There the writes nobody reads a result of (`defer(conn, sql, params)`: a case's UPDATE,
an event's INSERT, the chain head) are queued, and sent with whatever next needs an answer: the batch's
reads (`query(conn, statements)`: the chain head and the cases, locked) or its COMMIT, in one round trip
(`backend.store.pgpipe`, libpq's pipeline mode). The BEGIN is queued too, so a batch of n actions costs
two round trips instead of 2n + 5. And while writes keep coming, one: the COMMIT's round trip also begins
the transaction of the writes that queued meanwhile and does their reads (`opening`), and the first of
them leads that batch. Before every statement SQLAlchemy runs on the connection the queue is sent
(`flush`), so every statement still sees the ones before it. When a queued write fails, the server names
no writer: the batch is run again without queueing, where the failing write is found and fails alone.

Within a process this also replaces SQLite's sleeping busy-wait on the write lock with a queue. Between
processes on one SQLite file, `lock_file` does the same: the leaders of the processes take an exclusive
`flock` on it around their transaction, so a waiting process is woken the moment the other commits
instead of polling in SQLite's busy handler (which sleeps up to 100 ms between tries).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from backend.store import pgpipe

log = logging.getLogger(__name__)

_STATE = "citywall_tx"
_DEFERRED = "_deferred"


def tx_state(conn: Connection) -> dict | None:
    """The shared state of the group-commit transaction on `conn` (None outside one)."""
    return conn.info.get(_STATE)


def in_group_transaction(conn: Connection) -> bool:
    """True while a group commit's transaction is open on `conn` (it began it on the driver)."""
    return _STATE in conn.info


def defer(conn: Connection, sql: str, params: Any) -> bool:
    """Queue a write whose result nobody reads, to go to the server with the batch's COMMIT (PostgreSQL group
    commit). False: not in such a transaction, run it now."""
    state = conn.info.get(_STATE)
    if state is None:
        return False
    queued = state.get(_DEFERRED)
    if queued is None:
        return False
    queued.append((sql, params))
    return True


def flush(conn: Connection) -> None:
    """Send the queued writes now: a read that follows sees them."""
    state = conn.info.get(_STATE)
    if state:
        queued = state.get(_DEFERRED)
        if queued:
            _send(conn.connection.dbapi_connection, queued)


def queued(conn: Connection) -> bool:
    """True in a PostgreSQL group commit that queues its writes (reads go through `query`)."""
    state = conn.info.get(_STATE)
    return state is not None and _DEFERRED in state


def query(conn: Connection, statements: list[tuple[str, Any]]) -> list[list[tuple] | None]:
    """Run `statements` after the queued writes, in the same round trip (only where `queued(conn)`); the rows
    of each. A queued write that fails raises _DeferredFailed; a failing statement of these, the driver's error."""
    try:
        return _send(conn.connection.dbapi_connection, conn.info[_STATE][_DEFERRED], then=list(statements))
    except _ThenFailed as exc:
        if exc.stale:  # the session's statements were deallocated: run the batch again
            raise _DeferredFailed() from exc.__cause__
        raise (exc.__cause__ or exc) from None


def _send(driver: Any, queued: list, commit: bool = False, then: list | None = None) -> list:
    """The queued writes (and the COMMIT) in one round trip; raises _DeferredFailed when one of them (or the
    connection) fails. `then`: statements sent after them in the same round trip (reads, or the next
    transaction's opening after the COMMIT); their rows, or _ThenFailed when one of them fails."""
    items = queued[:]
    queued.clear()
    if commit:
        items.append(("COMMIT", None))
    done = len(items)
    if then:
        items += then
    try:
        out = pgpipe.round_trip(driver, items)
    except pgpipe.StatementFailed as exc:
        if exc.index >= done:
            raise _ThenFailed(exc.stale) from exc.__cause__
        raise _DeferredFailed() from (exc.__cause__ or exc)
    except Exception as exc:
        raise _DeferredFailed() from exc
    return out[done:]


def _flush_before_statement(conn, cursor, statement, parameters, context, executemany) -> None:
    flush(conn)


def on_commit(conn: Connection, key: str, fn: Callable[[Connection], None]) -> None:
    state = tx_state(conn)
    if state is None:
        fn(conn)
    else:
        state.setdefault("_before_commit", {})[key] = fn


class _Request:
    __slots__ = ("fn", "key", "result", "error", "done", "lead", "event")

    def __init__(self, fn: Callable[[Connection], Any], key: Any = None):
        self.fn = fn
        self.key = key
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.event = threading.Event()


class GroupCommit:
    def __init__(self, engine: Engine, max_batch: int = 64, clean_errors: tuple[type[BaseException], ...] = (),
                 lock_file: Path | None = None,
                 prefetch: Callable[[Connection, list], None] | None = None,
                 opening: Callable[[list], tuple[list, Callable[[dict, list], None]] | None] | None = None):
        self.engine = engine
        self.prefetch = prefetch
        self.opening = opening
        self._opened: _Opened | None = None
        self.lock_file = lock_file
        self._lock_fd: int | None = None
        self.max_batch = max_batch
        self.clean_errors = clean_errors
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._busy = False
        self._conn: Connection | None = None
        self._begin = "BEGIN IMMEDIATE" if engine.dialect.name == "sqlite" else None
        self.pipeline = _has_pipeline(engine)  # queue result-less writes (see `defer`)
        if self.pipeline and not event.contains(engine, "before_cursor_execute", _flush_before_statement):
            event.listen(engine, "before_cursor_execute", _flush_before_statement)
        self.batches = 0
        self.writes = 0
        self.openings = 0  # batches whose transaction the commit before them opened

    def run(self, fn: Callable[[Connection], Any], key: Any = None) -> Any:
        """Run `fn(conn)` inside a write transaction; return its result once committed, or raise its error.
        `key`: the row the write is about, read for the whole batch by `prefetch`."""
        req = _Request(fn, key)
        with self._lock:
            self._queue.append(req)
            lead = not self._busy
            self._busy = True
        if not lead:
            req.event.wait()
            if not req.lead:
                return self._outcome(req)
        with self._lock:  # the leader's own write is the first of the batch it takes
            opened, self._opened = self._opened, None
            if opened is not None:
                batch = opened.batch
            else:
                batch = self._queue[:self.max_batch]
                del self._queue[:len(batch)]
        self._execute(batch, req, opened)
        return self._outcome(req)

    def _hand_over(self) -> None:
        """Hand the lead to the batch whose transaction the last commit opened, else to the oldest waiting writer."""
        with self._lock:
            waiting = self._opened.batch if self._opened is not None else self._queue
            if waiting:
                nxt = waiting[0]
                nxt.lead = True
                nxt.event.set()
            else:
                self._busy = False

    @staticmethod
    def _outcome(req: _Request) -> Any:
        if req.error is not None:
            raise req.error
        return req.result

    def _execute(self, batch: list[_Request], own: _Request, opened: _Opened | None = None) -> None:
        pending = list(batch)
        while pending:
            failed = self._transaction(pending, opened)
            if failed is None:
                break
            opened = None  # (the failed attempt rolled the opened transaction back)
            pending = [r for r in pending if r is not failed and r.error is None]
        self.batches += 1
        self.writes += len(batch)
        for r in batch:
            r.done = True
        self._hand_over()  # first: the next leader starts while the writers of this batch wake up
        for r in batch:
            if r is not own:
                r.event.set()

    @contextlib.contextmanager
    def _between_processes(self):
        """The exclusive file lock of the writers of every process (only with `lock_file`)."""
        if self.lock_file is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _connection(self) -> Connection:
        """The held writer connection (only the current leader uses it)."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def close(self) -> None:
        """Give the held connection back (Context.close)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing to give back
                pass

    def _drop_connection(self, exc: BaseException) -> bool:
        """After an error: drop the held connection if the database closed it. True if it did."""
        conn = self._conn
        if conn is None:
            return False
        dropped = conn.invalidated or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        if not dropped and isinstance(exc, self.engine.dialect.loaded_dbapi.Error):
            dropped = self.engine.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if dropped:
            self._conn = None
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                pass
        return dropped

    def _commit_and_open(self, conn: Connection, driver: Any, state: dict) -> None:
        """Commit the batch (its queued writes and the COMMIT: one round trip). When case writes are waiting,
        the same round trip begins their transaction and does its reads (`opening`: the chain head and their
        cases, locked), so their batch starts with one round trip less. Their leader (the first of them) then
        finds it in `_opened`. If the opening fails after the COMMIT went through, they simply wait for a
        batch of their own."""
        nxt: list[_Request] = []
        reads = None
        if self.opening is not None and not conn.in_transaction():  # (a SQLAlchemy statement would roll it back)
            with self._lock:
                nxt = self._queue[:self.max_batch]
                keys = [r.key for r in nxt if r.key is not None]
                reads = self.opening(keys) if keys else None
                if reads is None:
                    nxt = []
                else:
                    del self._queue[:len(nxt)]
        if reads is None:
            _send(driver, state[_DEFERRED], commit=True)
            return
        statements, keep = reads
        try:
            found = _send(driver, state[_DEFERRED], commit=True, then=[("BEGIN", None)] + statements)
        except _ThenFailed:  # the COMMIT before the opening went through
            found = None
        except BaseException:
            self._put_back(nxt)
            raise
        opened: dict = {_DEFERRED: []}
        try:
            if found is not None:
                keep(opened, found[1:])
        except Exception:
            log.exception("group commit: keeping the next batch's reads failed; it reads them again")
            found = None
        if found is None:  # this batch is committed; the next one begins on its own
            try:
                driver.rollback()
            except Exception:
                pass
            self._put_back(nxt)
            return
        with self._lock:
            self._opened = _Opened(nxt, opened, conn)
        self.openings += 1

    def _put_back(self, batch: list[_Request]) -> None:
        with self._lock:
            self._queue[:0] = batch

    def _transaction(self, batch: list[_Request], opened: _Opened | None = None) -> _Request | None:
        """Run the batch in one transaction (the one `opened` began, if given). Returns the request that aborted
        it, if one did."""
        may_retry, queue = True, self.pipeline
        while True:
            try:
                return self._attempt(batch, may_retry, queue, opened)
            except _Dropped:  # once: a second dropped connection fails the batch like any other error
                may_retry = False
            except _Unqueued:  # a queued write failed: again, each statement sent as it comes
                queue = False
            opened = None

    def _attempt(self, batch: list[_Request], may_retry: bool, queue: bool,
                 opened: _Opened | None = None) -> _Request | None:
        culprit: _Request | None = None
        committing = False
        try:
            with self._between_processes():
                conn = self._connection()
                driver = conn.connection.dbapi_connection
                info = conn.info  # held: a connection SQLAlchemy invalidates meanwhile refuses `conn.info`
                if opened is not None and opened.conn is not conn:
                    opened = None  # begun on a connection that is gone: its transaction went with it
                if opened is not None:
                    state = opened.state
                elif queue:
                    state = {_DEFERRED: [("BEGIN", None)]}  # the BEGIN goes with the first read
                else:
                    state = {}
                info[_STATE] = state
                try:
                    if self._begin:
                        cur = driver.cursor()
                        try:
                            cur.execute(self._begin)
                        finally:
                            cur.close()
                    keys = [r.key for r in batch if r.key is not None]
                    if keys and self.prefetch is not None and opened is None:
                        self.prefetch(conn, keys)
                    for r in batch:
                        r.result, r.error = None, None
                        culprit = r
                        try:
                            r.result = r.fn(conn)
                        except self.clean_errors as exc:  # refused before writing: fails alone
                            r.error = exc
                    culprit = None
                    for fn in state.get("_before_commit", {}).values():
                        fn(conn)
                    committing = True
                    if queue:
                        self._commit_and_open(conn, driver, state)
                    else:
                        driver.commit()
                except BaseException:
                    try:
                        driver.rollback()
                    except Exception:
                        pass
                    raise
                finally:
                    info.pop(_STATE, None)
                    if conn.in_transaction():  # SQLAlchemy's own record of a statement it ran; the driver is done
                        try:
                            conn.rollback()
                        except Exception:
                            pass
        except BaseException as exc:
            queued_failed = isinstance(exc, _DeferredFailed)
            if queued_failed:
                exc = exc.__cause__ or exc
            dropped = self._drop_connection(exc)
            if dropped and may_retry and not committing:
                raise _Dropped() from exc  # the connection died before the commit: nothing was written, run it again
            if queued_failed and not dropped and len(batch) > 1:
                # the server refused a queued write (and with it the batch: nothing was committed); whose it was,
                # only running the batch again statement by statement can tell
                raise _Unqueued() from exc
            if culprit is not None and len(batch) > 1:
                culprit.result, culprit.error = None, exc
                for r in batch:
                    if r is not culprit:
                        r.result, r.error = None, None
                return culprit
            for r in batch:  # the commit itself failed, or the batch was one write
                if r.error is None:
                    r.result, r.error = None, exc
        return None


class _Opened:
    """A transaction the last commit's round trip began, with its batch's reads done (see `_commit_and_open`)."""
    __slots__ = ("batch", "state", "conn")

    def __init__(self, batch: list[_Request], state: dict, conn: Connection):
        self.batch, self.state, self.conn = batch, state, conn


def _has_pipeline(engine: Engine) -> bool:
    """PostgreSQL through psycopg with a libpq that pipelines."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return False
    import psycopg

    return psycopg.Pipeline.is_supported()


class _DeferredFailed(Exception):
    """Sending the queued writes failed (the cause is the driver's error)."""


class _Unqueued(Exception):
    """Run the batch again without queueing writes."""


class _ThenFailed(Exception):
    """A statement sent after the queued writes (`_send`'s `then`) failed; the writes and the COMMIT before it
    did not (the cause is the driver's error)."""

    def __init__(self, stale: bool = False):
        super().__init__()
        self.stale = stale  # the session's prepared statements were gone (see pgpipe.StatementFailed)


class _Dropped(Exception):
    """The held connection was closed by the database before the batch's commit."""
