"""Department evaluation (综合评价) over a time window: cases from the store, formulas from the domain."""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pandas as pd
from sqlalchemy import and_, func, or_, select

from backend.domain import evaluation
from backend.services import errors
from backend.services.context import current
from backend.store import models as m

CASES = m.Case.__table__
DEPARTMENTS = m.Department.__table__
COLUMNS = ["department_id", "dispatched_at", "disposed_at", "closed_at", "cancelled_at", "bundle_deadline_at",
           "rework_count", "postpone_count", "suspended"]


def cases_frame(start: datetime, end: datetime) -> pd.DataFrame:
    """The case columns the formulas need, for cases dispatched in [start, end)."""
    ctx = current()
    c = CASES.c
    q = select(c.department_id, c.dispatched_at, c.disposed_at, c.closed_at, c.cancelled_at,
               c.bundle_deadline_at, c.rework_count, c.postpone_count, (c.status == "suspended")) \
        .where(c.dispatched_at >= start, c.dispatched_at < end)
    with ctx.reader.connect() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("dispatched_at", "disposed_at", "closed_at", "cancelled_at", "bundle_deadline_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    df["suspended"] = df["suspended"].astype(bool)
    return df


def department_counts_sql(start: datetime, end: datetime) -> pd.DataFrame:
    """The counts of `domain.evaluation.department_counts`, aggregated by the database.

    Same definitions, row for row (a test compares both on the same store): reading a million cases
    into pandas takes seconds, aggregating them in SQL a fraction of that. Two statements per slice of
    departments: the window's cancelled and suspended cases, then the evaluated ones, whose condition
    is tested once per row in WHERE instead of inside every aggregate. Each statement reads
    the covering index `ix_cases_evaluation` (department, dispatch time, …) one department range after
    another, so the database aggregates as it goes instead of sorting the window. On SQLite the
    departments are split into slices counted on parallel connections (reads there take no lock).
    """
    engine = current().reader
    with engine.connect() as conn:
        dept_ids = conn.execute(select(DEPARTMENTS.c.id).order_by(DEPARTMENTS.c.id)).scalars().all()
    # SQLite runs a statement in one thread: slices on parallel connections use every core. PostgreSQL
    # already spreads one statement over parallel workers; slicing there only adds scans.
    slices_wanted = EVALUATION_SLICES if engine.dialect.name == "sqlite" else 1
    n = max(1, min(slices_wanted, len(dept_ids)))
    slices = [dept_ids[i::n] for i in range(n)]
    if n == 1:
        parts = [_counts_of(engine, slices[0], start, end)]
    else:
        with ThreadPoolExecutor(n, thread_name_prefix="evaluation") as pool:
            parts = list(pool.map(lambda ids: _counts_of(engine, ids, start, end), slices))
    df = pd.concat(parts) if parts else pd.DataFrame(columns=COUNT_COLUMNS)
    df = df.fillna(0).astype("int64")
    df.index = df.index.astype("int64")
    df.index.name = "department_id"
    return df.sort_index()


COUNT_COLUMNS = ["cases", "cancelled", "suspended", "to_dispose", "disposed", "disposed_on_time", "to_close",
                 "closed", "closed_on_time", "reworked", "rework_times", "postponed", "overdue_open"]
EVALUATION_SLICES = max(1, min(4, os.cpu_count() or 1))


def _counts_of(engine, dept_ids: list[int], start: datetime, end: datetime) -> pd.DataFrame:
    """The counts for some departments, as a frame indexed by department id (departments with no case absent)."""
    c = CASES.c
    if not dept_ids:
        return pd.DataFrame(columns=COUNT_COLUMNS)
    window = and_(c.department_id.in_(dept_ids), c.dispatched_at >= start, c.dispatched_at < end)
    cancelled = c.cancelled_at < end          # NULL (never cancelled) is not counted
    not_cancelled = or_(c.cancelled_at.is_(None), c.cancelled_at >= end)
    suspended = c.status == "suspended"
    # the few cases out of the evaluation (撤销, 挂账): the window's other cases are counted below
    out = (select(c.department_id, func.count().filter(cancelled).label("cancelled"),
                  func.count().filter(and_(not_cancelled, suspended)).label("suspended"))
           .where(window, or_(cancelled, suspended)).group_by(c.department_id))
    disposed = c.disposed_at < end
    on_time = and_(disposed, c.disposed_at <= c.bundle_deadline_at)
    closed = c.closed_at < end
    reworked = and_(disposed, c.rework_count > 0)
    evaluated = (select(c.department_id, func.count().label("to_dispose"),
                        func.count().filter(disposed).label("disposed"),
                        func.count().filter(on_time).label("disposed_on_time"),
                        func.count().filter(closed).label("closed"),
                        func.count().filter(and_(closed, on_time)).label("closed_on_time"),
                        func.count().filter(reworked).label("reworked"),
                        func.coalesce(func.sum(c.rework_count).filter(reworked), 0).label("rework_times"),
                        func.count().filter(c.postpone_count > 0).label("postponed"),
                        func.count().filter(and_(c.bundle_deadline_at < end,
                                                 or_(c.disposed_at.is_(None), c.disposed_at >= end),
                                                 or_(c.closed_at.is_(None), c.closed_at >= end))).label("overdue_open"))
                 .where(window, not_cancelled, c.status != "suspended").group_by(c.department_id))
    with engine.connect() as conn:
        a = pd.DataFrame(conn.execute(out).all(), columns=["department_id", "cancelled", "suspended"])
        b = pd.DataFrame(conn.execute(evaluated).all(),
                         columns=["department_id", "to_dispose", "disposed", "disposed_on_time", "closed",
                                  "closed_on_time", "reworked", "rework_times", "postponed", "overdue_open"])
    df = a.set_index("department_id").join(b.set_index("department_id"), how="outer").fillna(0)
    df["to_close"] = df["to_dispose"]
    df["cases"] = df["to_dispose"] + df["cancelled"] + df["suspended"]
    return df[COUNT_COLUMNS]


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
        if isinstance(v, float) and math.isnan(v):
            return None
    return v


def departments(start: datetime, end: datetime) -> dict:
    if end <= start:
        raise errors.BadInput("'to' must be after 'from'")
    ctx = current()
    scores = evaluation.department_scores(department_counts_sql(start, end))
    out = []
    for dept_id, dept in sorted(ctx.departments.items()):
        row = scores.loc[dept_id].to_dict() if dept_id in scores.index else None
        item = {"department_id": dept_id, "department_name": dept["name"], "department_type": dept["type"]}
        if row is None:
            item.update({"cases": 0, "score": None, "grade": None, "rank": None})
        else:
            item.update({k: _clean(v) for k, v in row.items()})
        out.append(item)
    out.sort(key=lambda d: (d["rank"] is None, d["rank"] or 0, d["department_id"]))
    return {"from": start.isoformat(), "to": end.isoformat(), "departments": out,
            "formula": "综合指标值 = 立案数分值×10% + 结案率分值×30% + 按期处置率分值×30% + 返工率分值×30%"}
