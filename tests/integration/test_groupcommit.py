"""Group commit: writes queued behind a leader share one transaction; a refused write undoes only itself."""
from __future__ import annotations

import threading
import time

from sqlalchemy import text

from backend.store.groupcommit import GroupCommit


def test_batched_writes_commit_together_and_fail_alone(store):
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE gc_probe (id INTEGER PRIMARY KEY, v TEXT)"))
    gc = GroupCommit(store.engine, clean_errors=(ValueError,))
    first_in = threading.Event()
    results: dict[int, object] = {}

    def write(i: int):
        def fn(conn):
            if i == 0:
                first_in.set()
                time.sleep(0.3)  # the leader is busy: everyone else queues behind it
            if i == 5:  # refused before writing anything: fails alone, the batch goes on
                raise ValueError("refused write")
            conn.execute(text("INSERT INTO gc_probe (id, v) VALUES (:i, 'x')"), {"i": i})
            return i
        try:
            results[i] = gc.run(fn)
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=write, args=(0,))]
    threads[0].start()
    first_in.wait(5)
    threads += [threading.Thread(target=write, args=(i,)) for i in range(1, 10)]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
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
    first_in = threading.Event()
    results: dict[int, object] = {}

    def write(i: int):
        def fn(conn):
            if i == 0:
                first_in.set()
                time.sleep(0.3)
            # write 3 inserts a duplicate key: a database error that aborts the transaction
            conn.execute(text("INSERT INTO gc_probe2 (id) VALUES (:i)"), {"i": 1 if i == 3 else i})
            return i
        try:
            results[i] = gc.run(fn)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=write, args=(0,))]
    threads[0].start()
    first_in.wait(5)
    threads += [threading.Thread(target=write, args=(i,)) for i in range(1, 6)]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(results[3], Exception)
    assert [results[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    with store.engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT id FROM gc_probe2")).scalars()) == [0, 1, 2, 4, 5]
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE gc_probe2"))
