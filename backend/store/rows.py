"""The hot write path of the case engine in plain SQL on the driver's cursor (案件写入).

Every case action reads the case, updates it, appends an event and moves the chain head. Through
SQLAlchemy's statement machinery that cost ~70 µs a statement; on the DBAPI cursor of the same
connection (so inside the same transaction) it costs a few µs; in a PostgreSQL group commit the statements
go in the batch's round trips instead (`backend.store.groupcommit`: `write_sql` queues, `read_sql` sends the
queue with the read). Values are encoded exactly as SQLAlchemy stores them (SQLite: datetimes as naive-UTC
text, JSON as text; PostgreSQL: native), so rows written here and rows written through SQLAlchemy read back
the same.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy.engine import Connection

from backend.store import models as m
from backend.store.groupcommit import defer, query, queued, tx_state

CASE_COLUMNS: tuple[str, ...] = tuple(c.name for c in m.Case.__table__.columns)
_CASE_COLUMN_SET = frozenset(CASE_COLUMNS)
EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in m.Event.__table__.columns)
_CASE_DATETIMES = frozenset(c.name for c in m.Case.__table__.columns if c.type.python_type is datetime)
_CASE_JSON = frozenset({"photos", "pending_payload"})
_CASE_BOOLS = frozenset({"on_time"})


def _pg(sql: str) -> str:
    return re.sub(r":(\w+)", r"%(\1)s", sql)


def _sqlite_time(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_read_time(v: Any) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    return datetime.fromisoformat(v).replace(tzinfo=timezone.utc)


class Dialect:
    """SQL text and value codecs for one database."""

    def __init__(self, postgres: bool):
        self.postgres = postgres
        p = _pg if postgres else (lambda s: s)
        cols = ", ".join(CASE_COLUMNS)
        self.select_case_locked = p(f"SELECT {cols} FROM cases WHERE id = :id" + (" FOR UPDATE" if postgres else ""))
        # several cases at once, locked in id order (two transactions never wait on each other crosswise)
        self.select_cases_locked = (f"SELECT {cols} FROM cases WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE"
                                    if postgres else
                                    f"SELECT {cols} FROM cases WHERE id IN (SELECT value FROM json_each(:ids))")
        self.head = "SELECT last_event_id, last_hash FROM audit_head WHERE id = 1" + (" FOR UPDATE" if postgres else "")
        self.head_update = p("UPDATE audit_head SET last_event_id = :event_id, last_hash = :hash WHERE id = 1")
        self.event_insert = p(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES "
                              f"({', '.join(':' + c for c in EVENT_COLUMNS)})")
        self.counter_next = p("INSERT INTO counters (key, value) VALUES (:key, 1) "
                              "ON CONFLICT (key) DO UPDATE SET value = counters.value + 1 RETURNING value")
        # PostgreSQL: the counter's next value and a new case id from its sequence in one round trip (the
        # case's INSERT then needs no answer and goes with the commit)
        self.counter_next_and_case_id = (
            f"WITH c AS ({self.counter_next}) SELECT c.value, nextval(pg_get_serial_sequence('cases', 'id')) FROM c"
            if postgres else None)
        self._wrap = p
        self._statements: dict[tuple[str, tuple[str, ...]], str] = {}

    def encode(self, name: str, value: Any) -> Any:
        if name in _CASE_JSON:
            return None if value is None else json.dumps(value, ensure_ascii=False)
        if self.postgres:
            return value
        if isinstance(value, datetime):
            return _sqlite_time(value)
        if isinstance(value, bool):
            return int(value)
        return value

    def read_time(self, value: Any) -> datetime | None:
        """A stored time as read on the driver's cursor, as a datetime (SQLite hands back text)."""
        return value if self.postgres else _sqlite_read_time(value)

    def decode_case(self, row: Iterable) -> dict:
        out = dict(zip(CASE_COLUMNS, row))
        for k in _CASE_JSON:
            v = out[k]
            if isinstance(v, str):
                out[k] = json.loads(v)
        if not self.postgres:
            for k in _CASE_DATETIMES:
                out[k] = _sqlite_read_time(out[k])
            for k in _CASE_BOOLS:
                if out[k] is not None:
                    out[k] = bool(out[k])
        return out

    def case_update(self, names: tuple[str, ...]) -> str:
        """The UPDATE of these columns (an action changes the same ones each time)."""
        return self._built("update", names, lambda: f"UPDATE cases SET {', '.join(f'{n} = :{n}' for n in names)} "
                                                    "WHERE id = :_id")

    def case_insert(self, names: tuple[str, ...]) -> str:
        """The INSERT of a new case with these columns, answering its id unless it is given."""
        return self._built("insert", names, lambda: f"INSERT INTO cases ({', '.join(names)}) "
                                                    f"VALUES ({', '.join(':' + n for n in names)})"
                                                    + ("" if "id" in names else " RETURNING id"))

    def _built(self, kind: str, names: tuple[str, ...], build) -> str:
        """A statement of `kind` over these columns, built (by `build()`) once per set of columns."""
        sql = self._statements.get((kind, names))
        if sql is None:
            sql = self._statements[(kind, names)] = self._wrap(build())
        return sql


_DIALECTS = {True: Dialect(True), False: Dialect(False)}


def dialect(conn: Connection) -> Dialect:
    return _DIALECTS[conn.engine.dialect.name == "postgresql"]


def cursor(conn: Connection):
    """A cursor on the connection's own DBAPI connection: it runs inside the open transaction."""
    return conn.connection.dbapi_connection.cursor()


def write_sql(conn: Connection, sql: str, params: Any) -> None:
    """A write whose result nobody reads: queued for the batch's commit in a PostgreSQL group commit."""
    if defer(conn, sql, params):
        return
    cur = cursor(conn)
    try:
        cur.execute(sql, params)
    finally:
        cur.close()


def read_sql(conn: Connection, sql: str, params: Any = None, one: bool = False) -> Any:
    """A read, after the writes queued before it (it sees them; in a PostgreSQL group commit they go in the
    same round trip)."""
    if queued(conn):
        found = query(conn, [(sql, params)])[0] or []
        return (found[0] if found else None) if one else found
    cur = cursor(conn)
    try:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return cur.fetchone() if one else cur.fetchall()
    finally:
        cur.close()


def _batch_cases(conn: Connection) -> dict | None:
    state = tx_state(conn)
    return None if state is None else state.get("cases")


def _row_ids(keys: list) -> list[int]:
    # only plain row ids: anything else is left to that write's own read, where it fails alone
    return sorted({i for i in keys if type(i) is int and 0 < i < 2 ** 63})


def _keep_cases(state: dict, d: Dialect, found: list) -> None:
    cases = state.setdefault("cases", {})
    for row in found:
        case = d.decode_case(row)
        cases[case["id"]] = case


def case_number_key(counter_key: str) -> tuple[str, str]:
    """The group-commit key of a write that will draw the next case number of `counter_key` (`reserve_case`):
    on PostgreSQL the batch's opening draws it, with the batch's other reads."""
    return ("case_number", counter_key)


def _counter_keys(keys: list) -> list[str]:
    return [k[1] for k in keys if type(k) is tuple and len(k) == 2 and k[0] == "case_number"]


def case_opening(keys: list):
    """The reads that open a PostgreSQL batch: the chain head, then the cases the batch is about, both locked
    (every writer locks the head first, so a batch waiting for another's commit holds no case meanwhile), then
    a case number and id for each new case; and the function that keeps their answers in the batch's state.
    None when the keys name no case and no new case."""
    ids = _row_ids(keys)
    counters = _counter_keys(keys)
    if not ids and not counters:
        return None
    d = _DIALECTS[True]
    statements = [(d.head, None)]
    if ids:
        statements.append((d.select_cases_locked, {"ids": ids}))
    statements += [(d.counter_next_and_case_id, {"key": k}) for k in counters]

    def keep(state: dict, results: list) -> None:
        head = results[0]
        if head:
            state["head"] = (head[0][0], head[0][1])
        if ids:
            _keep_cases(state, d, results[1] or [])
        reserved = state.setdefault("reserved", {})
        for key, found in zip(counters, results[1 + bool(ids):]):
            reserved.setdefault(key, []).append(tuple(found[0]))

    return statements, keep


def prefetch_cases(conn: Connection, keys: list) -> None:
    """What a group-commit batch's writes will read, read in one go: the cases it is about, read and locked in
    one statement and kept for the batch's writes (`load_case` hands out copies, `update_case` keeps them current
    for the next write of the batch). On PostgreSQL, in the same round trip, the chain head is read and locked
    first and kept as the batch's "head", and new cases' numbers are drawn (`case_opening`)."""
    state = tx_state(conn)
    if state is None:
        return
    d = dialect(conn)
    if queued(conn):
        opening = case_opening(keys)
        if opening is not None:
            statements, keep = opening
            keep(state, query(conn, statements))
        return
    ids = _row_ids(keys)
    if not ids:
        return
    if d.postgres:
        head = read_sql(conn, d.head, one=True)
        if head is not None:
            state["head"] = (head[0], head[1])
        found = read_sql(conn, d.select_cases_locked, {"ids": ids})
    else:
        found = read_sql(conn, d.select_cases_locked, {"ids": json.dumps(ids)})
    _keep_cases(state, d, found)


def load_case(conn: Connection, case_id: int) -> dict | None:
    """The case row, locked for this transaction (FOR UPDATE on PostgreSQL)."""
    kept = _batch_cases(conn)
    if kept is not None and case_id in kept:
        return dict(kept[case_id])
    d = dialect(conn)
    row = read_sql(conn, d.select_case_locked, {"id": case_id}, one=True)
    return None if row is None else d.decode_case(row)


def next_counter(conn: Connection, key: str) -> int:
    """The next value of a named counter, atomically (案卷号流水; one statement on both databases)."""
    return read_sql(conn, dialect(conn).counter_next, {"key": key}, one=True)[0]


def reserve_case(conn: Connection, counter_key: str) -> tuple[int, int | None]:
    """The next value of the counter `counter_key` and, on PostgreSQL, the id of the case about to be inserted
    (drawn from its sequence in the same round trip). On SQLite the id is None: the INSERT answers it."""
    state = tx_state(conn)
    drawn = state.get("reserved", {}).get(counter_key) if state is not None else None
    if drawn:  # drawn by the batch's opening (write key `case_number_key(counter_key)`)
        return drawn.pop(0)
    d = dialect(conn)
    if d.counter_next_and_case_id is None:
        return next_counter(conn, counter_key), None
    value, case_id = read_sql(conn, d.counter_next_and_case_id, {"key": counter_key}, one=True)
    return value, case_id


def insert_case(conn: Connection, values: dict) -> int:
    """INSERT a new case with `values` (every column it sets; `id` if reserve_case drew one); its id. With its
    id given, the INSERT is a write nobody waits for (queued for the commit in a PostgreSQL group commit)."""
    if not _CASE_COLUMN_SET.issuperset(values):
        raise KeyError(f"not case columns: {sorted(set(values) - _CASE_COLUMN_SET)}")
    d = dialect(conn)
    case_id = values.get("id")
    names = tuple(sorted(n for n in values if n != "id" or case_id is not None))
    params = {n: d.encode(n, values[n]) for n in names}
    if case_id is not None:
        write_sql(conn, d.case_insert(names), params)
        return case_id
    return read_sql(conn, d.case_insert(names), params, one=True)[0]


def update_case(conn: Connection, case_id: int, changes: dict) -> None:
    if not _CASE_COLUMN_SET.issuperset(changes):
        raise KeyError(f"not case columns: {sorted(set(changes) - _CASE_COLUMN_SET)}")
    d = dialect(conn)
    names = tuple(sorted(changes))
    params = {n: d.encode(n, changes[n]) for n in names}
    params["_id"] = case_id
    write_sql(conn, d.case_update(names), params)
    kept = _batch_cases(conn)
    if kept is not None and case_id in kept:
        kept[case_id].update(changes)


def lock_head(conn: Connection) -> tuple[int, str] | None:
    row = read_sql(conn, dialect(conn).head, one=True)
    return None if row is None else (row[0], row[1])


def write_head(conn: Connection, event_id: int, digest: str) -> None:
    write_sql(conn, dialect(conn).head_update, {"event_id": event_id, "hash": digest})


def insert_event(conn: Connection, values: dict) -> None:
    d = dialect(conn)
    params = {k: values.get(k) for k in EVENT_COLUMNS}
    if not d.postgres:
        params["created_at"] = _sqlite_time(params["created_at"])
    write_sql(conn, d.event_insert, params)
