"""Round trips of many statements on PostgreSQL (backend.store.pgpipe), against the real server."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import pq

from backend.store import pgpipe

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
INSERT = ("INSERT INTO probe (id, n, big, name, at, flag, ratio, doc, ids) "
          "VALUES (%(id)s, %(n)s, %(big)s, %(name)s, %(at)s, %(flag)s, %(ratio)s, %(doc)s, %(ids)s)")


@pytest.fixture
def driver():
    schema = "cw_pipe_" + uuid.uuid4().hex[:8]
    conn = psycopg.connect(DSN)
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"SET search_path TO {schema}")
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("CREATE TABLE probe (id integer PRIMARY KEY, n integer, big bigint, name varchar(50), "
                 "at timestamptz, flag boolean, ratio double precision, doc json, ids integer[])")
    conn.commit()
    yield conn
    if conn.closed:
        conn = psycopg.connect(DSN)
    conn.rollback()
    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.commit()
    conn.close()


def _values(i: int) -> dict:
    return {"id": i, "n": -7, "big": 2 ** 40 + i, "name": "东城区 O'Brien \\ %s", "flag": i % 2 == 0,
            "at": datetime(2026, 11, 27, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8))),
            "ratio": 0.1 + i, "doc": json.dumps({"a": [1, "二"]}, ensure_ascii=False), "ids": [3, 1, 2]}


def _table(conn) -> list[tuple]:
    return conn.execute("SELECT * FROM probe ORDER BY id").fetchall()


def test_values_go_in_and_come_out_as_psycopg_writes_and_reads_them(driver):
    driver.execute(INSERT, _values(1))  # psycopg's own way
    driver.commit()
    out = pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(2)), (INSERT, _values(3)),
                                     ("SELECT * FROM probe ORDER BY id", None), ("COMMIT", None)])
    assert out[0] is None and out[1] is None and out[4] is None
    rows = out[3]
    assert [r[0] for r in rows] == [1, 2, 3]
    psycopg_row, ours = rows[0], rows[1]
    assert ours[3] == psycopg_row[3] == "东城区 O'Brien \\ %s"
    assert ours[4] == psycopg_row[4] == datetime(2026, 11, 27, 0, 30, 15, 123456, tzinfo=timezone.utc)
    assert ours[7] == psycopg_row[7] == {"a": [1, "二"]}
    assert ours[8] == psycopg_row[8] == [3, 1, 2]
    assert (ours[5], ours[6]) == (True, 2.1) and ours[2] == 2 ** 40 + 2
    assert _table(driver) == rows  # committed
    assert driver.info.transaction_status == pq.TransactionStatus.INTRANS  # (psycopg began one for _table)


def test_psycopg_sees_the_transaction_a_round_trip_began_and_ended(driver):
    pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(1))])
    assert driver.info.transaction_status == pq.TransactionStatus.INTRANS
    assert driver.execute("SELECT count(*) FROM probe").fetchone()[0] == 1  # in that transaction
    pgpipe.round_trip(driver, [("COMMIT", None)])
    assert driver.info.transaction_status == pq.TransactionStatus.IDLE


def test_a_failing_statement_is_named_and_takes_its_transaction_with_it(driver):
    with pytest.raises(pgpipe.StatementFailed) as failed:
        pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(1)), (INSERT, _values(1)),
                                   (INSERT, _values(2)), ("COMMIT", None)])
    assert failed.value.index == 2
    assert isinstance(failed.value.__cause__, psycopg.errors.UniqueViolation)
    assert not failed.value.stale
    driver.rollback()
    assert _table(driver) == []  # the first insert went with the transaction, the third never ran
    pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(5)), ("COMMIT", None)])  # the connection goes on
    assert [r[0] for r in _table(driver)] == [5]


def test_a_value_that_cannot_be_sent_fails_its_statement_before_anything_is_sent(driver):
    bad = _values(2) | {"n": {"not": "a number"}}
    with pytest.raises(pgpipe.StatementFailed) as failed:
        pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(1)), (INSERT, bad), ("COMMIT", None)])
    assert failed.value.index == 2
    assert driver.info.transaction_status == pq.TransactionStatus.IDLE  # not even the BEGIN went
    assert _table(driver) == []


def test_a_new_statement_used_twice_in_one_round_trip_is_prepared_once(driver):
    pgpipe.round_trip(driver, [("BEGIN", None)] + [(INSERT, _values(i)) for i in range(1, 5)] + [("COMMIT", None)])
    assert [r[0] for r in _table(driver)] == [1, 2, 3, 4]


def test_psycopg_rolling_back_leaves_the_prepared_statements_alone(driver):
    """psycopg deallocates every prepared statement of the session after a rollback once it has prepared some
    itself; the round trips' connection has it prepare none, so their statements stay."""
    pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(1)), ("COMMIT", None)])
    for _ in range(8):  # psycopg would prepare this after five runs
        driver.execute("SELECT count(*) FROM probe WHERE id = %s", (1,))
    driver.rollback()
    driver.execute("SELECT 1")
    driver.rollback()
    pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(2)), ("COMMIT", None)])
    assert [r[0] for r in _table(driver)] == [1, 2]


def test_statements_deallocated_by_someone_else_are_prepared_again(driver):
    pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(1)), ("COMMIT", None)])
    driver.execute("DEALLOCATE ALL")
    driver.commit()
    with pytest.raises(pgpipe.StatementFailed) as failed:
        pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(2)), ("COMMIT", None)])
    assert failed.value.stale  # worth running again
    driver.rollback()
    pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(2)), ("COMMIT", None)])
    assert [r[0] for r in _table(driver)] == [1, 2]


def test_a_round_trip_on_a_connection_the_server_closed_raises_the_drivers_error(driver):
    killer = psycopg.connect(DSN, autocommit=True)
    try:
        killer.execute("SELECT pg_terminate_backend(%s)", (driver.info.backend_pid,))
    finally:
        killer.close()
    with pytest.raises(psycopg.OperationalError):
        pgpipe.round_trip(driver, [("BEGIN", None), (INSERT, _values(1)), ("COMMIT", None)])
    assert driver.closed
