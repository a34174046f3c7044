"""Finding due and overdue cases among 1,000,000 open ones, and department evaluation over 1,000,000.

    .venv/bin/python bench/bench_sla.py [--cases 1000000] [--db sqlite,postgresql]

Side by side in one run: the indexed query of the SLA worker (`cases.due_cases`) against the naive
way (load every open case's deadline and compare in Python); the evaluation read from the store plus
the pandas formulas against the formulas alone. Goals: due/overdue < 100 ms; evaluation < 1 s.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from backend.domain import evaluation  # noqa: E402
from backend.services import cases, seed  # noqa: E402
from backend.services import evaluation as eval_service  # noqa: E402
from backend.services.context import Context, use  # noqa: E402
from backend.store import models as m  # noqa: E402
from backend.store.db import migrate  # noqa: E402
from tests import support  # noqa: E402

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)


def fill(ctx: Context, n: int) -> None:
    rng = random.Random(1)
    t = m.Case.__table__
    dept_ids = list(ctx.departments)
    batch = []
    t0 = time.perf_counter()
    with ctx.engine.begin() as conn:
        for i in range(n):
            created = NOW - timedelta(minutes=rng.randint(0, 60 * 24 * 30))
            dispatched = created + timedelta(minutes=30)
            deadline = dispatched + timedelta(hours=rng.choice([2, 4, 8, 24, 72]))
            # 0.1% of the open cases are due right now: the handful the worker must find
            due = rng.random() < 0.001
            closed = rng.random() < 0.6
            disposed = dispatched + timedelta(hours=rng.uniform(0.5, 30)) if closed else None
            batch.append({
                "case_number": f"B{i:012d}", "class_code": "E0102", "source": "inspector",
                "status": "closed" if closed else "handling", "urgency": "normal", "description": "bench",
                "address": "", "lat": 39.9, "lon": 116.4, "grid_code": "110101001001001",
                "street_code": "110101001", "community_code": "110101001001", "department_id": rng.choice(dept_ids),
                "reporter": "bench", "photos": [], "created_at": created, "updated_at": created,
                "dispatched_at": dispatched, "disposed_at": disposed, "closed_at": disposed,
                "bundle_deadline_at": deadline, "stage": None if closed else "dispose",
                "deadline_at": None if closed else (NOW - timedelta(seconds=5) if due else NOW + timedelta(hours=3 + i % 500)),
                "warn_at": None if closed else NOW + timedelta(hours=2 + i % 500),
                "sla_state": 0, "rework_count": int(rng.random() < 0.08), "postpone_count": 0,
                "postpone_hours": 0.0, "return_count": 0, "supervise_count": 0, "version": 1,
            })
            if len(batch) == 20000:
                conn.execute(m.Case.__table__.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(t.insert(), batch)
    print(f"  filled {n} cases in {time.perf_counter() - t0:.1f} s")


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def naive_due(ctx: Context) -> list[int]:
    t = m.Case.__table__
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.deadline_at, t.c.sla_state).where(t.c.status != "closed")).all()
    now = NOW.replace(tzinfo=None)
    return [r.id for r in rows if r.deadline_at is not None and r.sla_state < 2
            and (r.deadline_at.replace(tzinfo=None) if r.deadline_at.tzinfo is None else
                 r.deadline_at.astimezone(timezone.utc).replace(tzinfo=None)) <= now]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--db", default="sqlite,postgresql")
    args = ap.parse_args()
    for db in args.db.split(","):
        tmp = Path(tempfile.mkdtemp(prefix="cw-sla-"))
        schema = None
        url = f"sqlite:///{tmp / 'sla.db'}" if db == "sqlite" else None
        if url is None:
            url, schema = support.pg_url_with_schema()
        ctx = Context.from_config(support.make_config(tmp, url, "redis://127.0.0.1:6379/9"))
        use(ctx)
        try:
            print(f"== {db} ==")
            migrate(ctx.engine)
            seed.seed_city(support.small_city())
            fill(ctx, args.cases)
            if db == "postgresql":
                with ctx.engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE cases")
            dt, due = timed(lambda: cases.due_cases(NOW, limit=5000), 7)
            print(f"  due/overdue via index: {len(due['overdue'])} overdue, {len(due['warning'])} warning, "
                  f"median {dt * 1000:.1f} ms (goal < 100 ms)")
            ndt, naive = timed(lambda: naive_due(ctx), 1)
            assert sorted(naive) == sorted(due["overdue"]), "the naive scan disagrees"
            print(f"  naive scan of every open case in Python: {ndt * 1000:.0f} ms  (ratio {ndt / dt:.0f}x)")
            start, end = NOW - timedelta(days=30), NOW
            sdt, result = timed(lambda: eval_service.departments(start, end), 3)
            n = sum(d["cases"] or 0 for d in result["departments"])
            print(f"  evaluation over {n} cases, SQL aggregate + pandas scoring: median {sdt:.2f} s (goal < 1 s)")
            edt, frame = timed(lambda: eval_service.cases_frame(start, end), 1)
            fdt, _ = timed(lambda: evaluation.evaluate_departments(frame, start, end), 3)
            print(f"  the naive way, every case read into pandas: {edt:.2f} s + formulas {fdt:.2f} s "
                  f"(ratio {(edt + fdt) / sdt:.1f}x)")
        finally:
            ctx.close()
            use(None)
            if schema:
                support.drop_schema(schema)


if __name__ == "__main__":
    main()
