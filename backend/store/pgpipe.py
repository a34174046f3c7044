"""Many statements to PostgreSQL in one round trip (管道往返): libpq's pipeline mode, driven directly.

The group commit sends a batch's reads and writes to the server in two round trips (see
`backend.store.groupcommit`). psycopg's own pipeline mode is general and pays for it: it waits for
the server after the BEGIN that opens a transaction, every `with conn.pipeline()` block ends with a
second Sync that it waits for, and each statement costs ~50 µs of Python (a batch of four actions
took four round trips and ~0.9 ms of the leader's time). Here the statements go out as libpq calls
on psycopg's own connection: each as a named prepared statement (prepared on first use on that
connection) with its parameters in text (the server infers their types from the statement, as it
does for psycopg), then one Sync; the answers are read once, after it. BEGIN and COMMIT are
statements like the others, and psycopg, which asks libpq for the transaction status, sees the
transaction as it is.

Values are adapted by psycopg's own dumpers and rows decoded by its loaders, so what is written and
read here is what psycopg would write and read.
"""
from __future__ import annotations

import re
import select
import threading
import weakref
from typing import Any, Sequence

from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer

_PARAM = re.compile(r"%\((\w+)\)s|%%")
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)
_TUPLES = pq.ExecStatus.TUPLES_OK
_SYNC = pq.ExecStatus.PIPELINE_SYNC


class StatementFailed(Exception):
    """Statement `index` of a round trip failed (the driver's error is the cause); the ones after it were
    not run. The server's transaction, if one was open, is aborted."""

    def __init__(self, index: int, stale: bool = False):
        super().__init__(f"statement {index} of the round trip failed")
        self.index = index
        self.stale = stale  # the session's prepared statements were gone (DISCARD ALL): worth running again


class _Statement:
    __slots__ = ("name", "query", "names")

    def __init__(self, name: bytes | None, query: bytes, names: tuple[str, ...]):
        self.name, self.query, self.names = name, query, names


_statements: dict[str, _Statement] = {}
_statements_lock = threading.Lock()


def _compile(sql: str) -> _Statement:
    """`%(name)s` placeholders as `$n` (a name used twice is one parameter); statements with parameters get a
    prepared-statement name of their own."""
    st = _statements.get(sql)
    if st is not None:
        return st
    names: list[str] = []

    def number(m: re.Match) -> str:
        if m.group(1) is None:
            return "%"
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    query = _PARAM.sub(number, sql).encode()
    with _statements_lock:
        st = _statements.get(sql)
        if st is None:
            name = f"cw_{len(_statements) + 1}".encode() if names else None
            st = _statements[sql] = _Statement(name, query, tuple(names))
    return st


class _Session:
    """What a round trip keeps per connection: the statements prepared on it, its adapters."""

    def __init__(self, driver: Any):
        # psycopg deallocates every statement of the session (DEALLOCATE ALL) after a rollback once it has
        # prepared statements of its own: on a connection that runs round trips it prepares none
        driver.prepare_threshold = None
        self.prepared: set[bytes] = set()
        self.tx = Transformer(driver)
        self.poll = select.poll()
        self.poll.register(driver.pgconn.socket, select.POLLIN)


_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _session(driver: Any) -> _Session:
    s = _sessions.get(driver)
    if s is None:
        s = _sessions[driver] = _Session(driver)
    return s


def round_trip(driver: Any, statements: Sequence[tuple[str, Any]]) -> list[list[tuple] | None]:
    """Run `statements` ((sql with %(name)s placeholders, a dict of values or None), in order) on the psycopg
    connection `driver` in one round trip. Each statement's rows (None for a statement that returns none).
    Raises StatementFailed (the first that failed) or the driver's error when the connection fails."""
    pg = driver.pgconn
    session = _session(driver)
    tx = session.tx
    prepared = session.prepared
    calls: list[tuple[_Statement, list | None]] = []
    for i, (sql, params) in enumerate(statements):  # adapt every value before anything is sent
        st = _compile(sql)
        try:
            values = (tx.dump_sequence([params[n] for n in st.names], [PyFormat.TEXT] * len(st.names))
                      if st.names else None)
        except Exception as exc:
            raise StatementFailed(i) from exc
        calls.append((st, values))
    owners: list[tuple[int, bytes | None]] = []  # per answer: its statement, and the name it prepares
    preparing: set[bytes] = set()
    pg.enter_pipeline_mode()
    try:
        for i, (st, values) in enumerate(calls):
            if st.name is None:
                pg.send_query_params(st.query, None)
            else:
                if st.name not in prepared and st.name not in preparing:
                    pg.send_prepare(st.name, st.query)
                    preparing.add(st.name)
                    owners.append((i, st.name))
                pg.send_query_prepared(st.name, values)
            owners.append((i, None))
        pg.pipeline_sync()
        _flush(pg)
        answers = _answers(pg, session)
    finally:
        try:
            pg.exit_pipeline_mode()
        except Exception:  # the connection broke meanwhile (its error is on its way up)
            pass
    out: list[list[tuple] | None] = [None] * len(calls)
    for (i, name), results in zip(owners, answers):
        for res in results:
            if res.status not in _OK:
                if res.status == pq.ExecStatus.FATAL_ERROR:
                    error = pg_errors.error_from_result(res, encoding=pg._encoding)
                    stale = isinstance(error, pg_errors.InvalidSqlStatementName)
                    if stale:
                        prepared.clear()  # the session's statements were deallocated: prepare them again
                    raise StatementFailed(i, stale) from error
                raise StatementFailed(i)  # PIPELINE_ABORTED after an earlier failure is reported above
        if name is not None:
            prepared.add(name)
        elif results and results[-1].status == _TUPLES:
            res = results[-1]
            tx.set_pgresult(res)
            out[i] = tx.load_rows(0, res.ntuples, tuple)
    return out


def _flush(pg: Any) -> None:
    """Send what libpq holds, reading meanwhile so that a server busy writing answers never stalls."""
    while pg.flush():
        ready = select.select([pg.socket], [pg.socket], [])
        if ready[0]:
            pg.consume_input()


def _answers(pg: Any, session: _Session) -> list[list]:
    """The results of each sent statement (one list per statement, prepares included), up to the Sync."""
    answers: list[list] = []
    current: list = []
    while True:
        while pg.is_busy():
            session.poll.poll()  # the GIL is released while waiting
            pg.consume_input()
        res = pg.get_result()
        if res is None:
            answers.append(current)
            current = []
        elif res.status == _SYNC:
            return answers
        else:
            current.append(res)
