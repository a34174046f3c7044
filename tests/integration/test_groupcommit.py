"""Group commit: writes queued behind a leader share one transaction; a refused write undoes only itself."""
from __future__ import annotations

import threading
import time

import pytest

from sqlalchemy import text

from backend.store.groupcommit import GroupCommit


def _writers_behind_a_busy_leader(gc: GroupCommit, n: int, body, catch: type[BaseException],
                                  key=None) -> dict[int, object]:
    """Writer 0 enters first and holds the leader's transaction 0.3 s while writers 1..n-1 queue behind it;
    each runs body(conn, i) through gc (naming `key`). Returns each writer's result, or the `catch` error it
    raised."""
    first_in = threading.Event()
    results: dict[int, object] = {}

    def write(i: int):
        def fn(conn):
            if i == 0:
                first_in.set()
                time.sleep(0.3)  # the leader is busy: everyone else queues behind it
            return body(conn, i)
        try:
            results[i] = gc.run(fn, key=key)
        except catch as exc:
            results[i] = exc

    threads = [threading.Thread(target=write, args=(0,))]
    threads[0].start()
    first_in.wait(5)
    threads += [threading.Thread(target=write, args=(i,)) for i in range(1, n)]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    return results


def _version(store, case_id: int) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT version FROM cases WHERE id = :i"), {"i": case_id}).scalar_one()


def _bump(case_id: int):
    """A write that raises the case's version by one (read through the batch's kept row) and answers the new one."""
    from backend.store import rows

    def bump(conn, i: int):
        row = rows.load_case(conn, case_id)
        rows.update_case(conn, case_id, {"version": row["version"] + 1})
        return row["version"] + 1
    return bump


def _recording(reads: list):
    """rows.prefetch_cases, noting the keys of every batch that reads for itself."""
    from backend.store import rows

    def prefetch(conn, keys):
        reads.append(list(keys))
        rows.prefetch_cases(conn, keys)
    return prefetch


def test_batched_writes_commit_together_and_fail_alone(store):
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE gc_probe (id INTEGER PRIMARY KEY, v TEXT)"))
    gc = GroupCommit(store.engine, clean_errors=(ValueError,))

    def insert(conn, i: int):
        if i == 5:  # refused before writing anything: fails alone, the batch goes on
            raise ValueError("refused write")
        conn.execute(text("INSERT INTO gc_probe (id, v) VALUES (:i, 'x')"), {"i": i})
        return i

    results = _writers_behind_a_busy_leader(gc, 10, insert, ValueError)
    assert isinstance(results[5], ValueError)
    assert [results[i] for i in range(10) if i != 5] == [i for i in range(10) if i != 5]
    with store.engine.connect() as conn:
        ids = sorted(conn.execute(text("SELECT id FROM gc_probe")).scalars())
    assert ids == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    # nine queued writers were served by fewer transactions than writes
    assert gc.writes == 10 and gc.batches < 10
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE gc_probe"))


def test_a_write_that_breaks_the_transaction_does_not_fail_the_others(store):
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE gc_probe2 (id INTEGER PRIMARY KEY)"))
    gc = GroupCommit(store.engine)

    def insert(conn, i: int):
        # write 3 inserts a duplicate key: a database error that aborts the transaction
        conn.execute(text("INSERT INTO gc_probe2 (id) VALUES (:i)"), {"i": 1 if i == 3 else i})
        return i

    results = _writers_behind_a_busy_leader(gc, 6, insert, Exception)
    assert isinstance(results[3], Exception)
    assert [results[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    with store.engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT id FROM gc_probe2")).scalars()) == [0, 1, 2, 4, 5]
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE gc_probe2"))


def _writer_process(url: str, lock_file: str, who: int, n: int, out) -> None:
    """Another process writing through its own group commit on the same SQLite file."""
    from pathlib import Path

    from backend.store.db import make_engine

    engine = make_engine(url, busy_timeout=0)  # no busy waiting at all: any contention errors

    gc = GroupCommit(engine, lock_file=Path(lock_file))
    errors = 0
    for i in range(n):
        try:
            gc.run(lambda conn, i=i: conn.execute(text("INSERT INTO mp_probe (who, i) VALUES (:w, :i)"),
                                                   {"w": who, "i": i}))
        except Exception:
            errors += 1
    out.put(errors)


def test_writers_of_several_processes_queue_on_the_file_lock_instead_of_failing(tmp_path):
    import multiprocessing

    from sqlalchemy import create_engine

    db = tmp_path / "mp.db"
    url = f"sqlite:///{db}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("PRAGMA journal_mode=WAL"))
        conn.execute(text("CREATE TABLE mp_probe (who INTEGER, i INTEGER)"))
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    procs = [mp.Process(target=_writer_process, args=(url, str(db) + ".writelock", w, 300, out)) for w in range(3)]
    for p in procs:
        p.start()
    errors = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    with engine.connect() as conn:
        written = conn.execute(text("SELECT count(*) FROM mp_probe")).scalar_one()
    assert errors == [0, 0, 0] and written == 900


def test_writes_go_on_after_the_database_drops_the_writer_connection(store):
    """The leaders hold one connection; when the server closes it (a PostgreSQL restart, an idle cut-off) the
    next write is run again on a fresh one instead of failing."""
    if store.engine.dialect.name != "postgresql":
        return  # SQLite files are not closed from outside
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE gc_probe3 (id INTEGER PRIMARY KEY)"))
    gc = GroupCommit(store.engine)
    try:
        insert = "INSERT INTO gc_probe3 (id) VALUES (:i)"
        gc.run(lambda conn: conn.execute(text(insert), {"i": 1}))
        pid = gc.run(lambda conn: conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        with store.engine.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        time.sleep(0.2)
        gc.run(lambda conn: conn.execute(text(insert), {"i": 2}))  # runs again on a new connection
        assert gc.run(lambda conn: conn.execute(text("SELECT pg_backend_pid()")).scalar_one()) != pid
        with store.engine.connect() as conn:
            assert sorted(conn.execute(text("SELECT id FROM gc_probe3")).scalars()) == [1, 2]
    finally:
        gc.close()
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE gc_probe3"))


def test_a_batch_reads_its_cases_once_and_each_write_sees_the_one_before(store):
    """Writes naming their case (`key`) get it from one read for the whole batch; a second write on the same
    case in the batch sees the first one's change (the kept row is updated with it)."""
    from tests.conftest import new_case

    case_id = new_case()["id"]
    start = _version(store, case_id)
    reads: list[list] = []
    gc = GroupCommit(store.engine, prefetch=_recording(reads))
    try:
        results = _writers_behind_a_busy_leader(gc, 6, _bump(case_id), Exception, key=case_id)
    finally:
        gc.close()
    assert sorted(results.values()) == list(range(start + 1, start + 7))  # each saw the one before
    assert _version(store, case_id) == start + 6
    assert len(reads) < 6 and sum(len(k) for k in reads) == 6  # the five queued writes: one read


def test_a_connection_dropped_again_on_the_retry_fails_the_write_with_the_database_error(store):
    """The batch is run again once on a fresh connection; dropped there too, the writer gets the database's
    error (it does not hang, nor see the group commit's internals), and the next write goes through."""
    if store.engine.dialect.name != "postgresql":
        return
    from sqlalchemy.exc import DBAPIError

    attempts = []

    def drop_own_connection(conn, keys):
        attempts.append(keys)
        conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    gc = GroupCommit(store.engine, prefetch=drop_own_connection)
    try:
        with pytest.raises(DBAPIError):
            gc.run(lambda conn: conn.execute(text("SELECT 1")).scalar_one(), key=1)
        assert len(attempts) == 2
        assert gc.run(lambda conn: conn.execute(text("SELECT 2")).scalar_one()) == 2  # no key: no prefetch
    finally:
        gc.close()


def test_a_queued_write_that_fails_at_the_commit_fails_alone(store):
    """On PostgreSQL result-less writes go to the server with the COMMIT; when one of them is refused there,
    only its writer gets the error and the others' writes are committed (on SQLite each write runs at once)."""
    from backend.store import rows
    from backend.store.groupcommit import tx_state

    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE gc_probe4 (id INTEGER PRIMARY KEY)"))
    gc = GroupCommit(store.engine)
    insert = "INSERT INTO gc_probe4 (id) VALUES (%(i)s)" if gc.pipeline else "INSERT INTO gc_probe4 (id) VALUES (:i)"
    queued: list[int] = []
    try:
        def write(conn, i: int):
            rows.write_sql(conn, insert, {"i": 1 if i == 3 else i})  # write 3: a duplicate key
            queued.append(len(tx_state(conn).get("_deferred", [])))
            return i

        results = _writers_behind_a_busy_leader(gc, 6, write, Exception)
    finally:
        gc.close()
    assert isinstance(results[3], Exception)
    assert "duplicate" in str(results[3]).lower() or "unique" in str(results[3]).lower()
    assert [results[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    with store.engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT id FROM gc_probe4")).scalars()) == [0, 1, 2, 4, 5]
    assert (max(queued) > 1) == gc.pipeline  # PostgreSQL: the batch's inserts were queued, not sent one by one
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE gc_probe4"))


def test_a_read_sees_the_writes_queued_before_it(store):
    """A read on the driver and a statement through SQLAlchemy both run after the queued writes before them."""
    from backend.store import rows

    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE gc_probe5 (id INTEGER PRIMARY KEY, v INTEGER)"))
        conn.execute(text("INSERT INTO gc_probe5 (id, v) VALUES (1, 0)"))
    gc = GroupCommit(store.engine)
    p = "%(v)s" if gc.pipeline else ":v"
    try:
        def write(conn):
            rows.write_sql(conn, f"UPDATE gc_probe5 SET v = {p} WHERE id = 1", {"v": 7})
            on_driver = rows.read_sql(conn, "SELECT v FROM gc_probe5 WHERE id = 1", one=True)[0]
            rows.write_sql(conn, f"UPDATE gc_probe5 SET v = {p} WHERE id = 1", {"v": 8})
            through_sqlalchemy = conn.execute(text("SELECT v FROM gc_probe5 WHERE id = 1")).scalar_one()
            rows.write_sql(conn, f"UPDATE gc_probe5 SET v = {p} WHERE id = 1", {"v": 9})
            return on_driver, through_sqlalchemy

        assert gc.run(write) == (7, 8)
    finally:
        gc.close()
    with store.engine.begin() as conn:
        assert conn.execute(text("SELECT v FROM gc_probe5 WHERE id = 1")).scalar_one() == 9  # sent with the commit
        conn.execute(text("DROP TABLE gc_probe5"))


def test_a_batch_waiting_for_the_chain_head_holds_no_case_meanwhile(store):
    """PostgreSQL: a batch takes the chain head before its cases, so while it waits for another writer that holds
    the head, that writer can still lock any case (before, the waiting batch held its cases: a deadlock)."""
    if store.engine.dialect.name != "postgresql":
        return
    from backend.store import rows
    from tests.conftest import new_case

    case_id = new_case()["id"]
    gc = GroupCommit(store.engine, prefetch=rows.prefetch_cases)
    other = store.engine.connect()
    try:
        other.execute(text("SET lock_timeout = '2s'"))
        other.execute(text("SELECT last_event_id FROM audit_head WHERE id = 1 FOR UPDATE"))  # holds the head
        done = threading.Event()

        def write():
            gc.run(lambda conn: rows.load_case(conn, case_id)["id"], key=case_id)
            done.set()

        t = threading.Thread(target=write)
        t.start()
        time.sleep(0.5)  # the batch is waiting for the head now
        assert not done.is_set()
        locked = other.execute(text("SELECT id FROM cases WHERE id = :i FOR UPDATE"), {"i": case_id}).scalar_one()
        assert locked == case_id  # not refused by the lock timeout: the waiting batch holds no case
        other.commit()
        t.join(10)
        assert done.is_set()  # and the batch went through once the head was free
    finally:
        other.close()
        gc.close()


def test_the_commit_opens_the_next_batch_and_its_writes_see_the_ones_before(store):
    """PostgreSQL: writes that queued while a batch ran find their transaction begun, and their cases and the
    chain head read, by that batch's commit (the same round trip): their batch needs no read of its own. On
    SQLite there is no opening and every batch reads for itself."""
    from backend.store import rows
    from tests.conftest import new_case

    case_id = new_case()["id"]
    start = _version(store, case_id)
    reads: list[list] = []
    gc = GroupCommit(store.engine, prefetch=_recording(reads), opening=rows.case_opening)
    try:
        results = _writers_behind_a_busy_leader(gc, 6, _bump(case_id), Exception, key=case_id)
    finally:
        gc.close()
    assert sorted(results.values()) == list(range(start + 1, start + 7))
    assert _version(store, case_id) == start + 6
    if gc.pipeline:
        assert gc.openings == 1 and reads == [[case_id]]  # only the leader's batch read for itself
    else:
        assert gc.openings == 0 and len(reads) == 2


def test_when_the_opening_fails_the_commit_stands_and_the_next_batch_reads_for_itself(store):
    if store.engine.dialect.name != "postgresql":
        return
    from backend.store import rows
    from tests.conftest import new_case

    case_id = new_case()["id"]
    start = _version(store, case_id)

    def failing_opening(keys):
        statements, keep = rows.case_opening(keys)
        return statements + [("SELECT 1 / 0", None)], keep

    gc = GroupCommit(store.engine, prefetch=rows.prefetch_cases, opening=failing_opening)
    try:
        def bump(conn, i: int):
            row = rows.load_case(conn, case_id)
            rows.update_case(conn, case_id, {"version": row["version"] + 1})
            return i

        results = _writers_behind_a_busy_leader(gc, 4, bump, Exception, key=case_id)
        assert results == {0: 0, 1: 1, 2: 2, 3: 3}
        assert gc.openings == 0 and gc.batches == 2
        assert gc.run(lambda conn: rows.load_case(conn, case_id)["id"], key=case_id) == case_id  # goes on
    finally:
        gc.close()
    assert _version(store, case_id) == start + 4  # both batches committed


def test_new_case_numbers_drawn_by_the_opening_are_consecutive_and_unique(store):
    """Writes that will create a case name their counter (`case_number_key`); on PostgreSQL the batch's
    opening draws their numbers and ids, and each write takes its own, in order."""
    from backend.store import rows
    from backend.store.groupcommit import tx_state

    gc = GroupCommit(store.engine, prefetch=rows.prefetch_cases, opening=rows.case_opening)
    drawn_before: list[bool] = []
    try:
        def number(conn, i: int):
            state = tx_state(conn)
            drawn_before.append(bool(state.get("reserved", {}).get("gc-test")))
            return rows.reserve_case(conn, "gc-test")

        results = _writers_behind_a_busy_leader(gc, 6, number, Exception, key=rows.case_number_key("gc-test"))
    finally:
        gc.close()
    numbers = sorted(v[0] for v in results.values())
    assert numbers == numbers[:1] + [numbers[0] + k for k in range(1, 6)]
    if gc.pipeline:
        ids = [v[1] for v in results.values()]
        assert len(set(ids)) == 6 and all(isinstance(i, int) for i in ids)
        assert all(drawn_before)  # the leader's batch by its own read, the rest by the opening
        assert gc.openings == 1
    else:
        assert not any(drawn_before)
