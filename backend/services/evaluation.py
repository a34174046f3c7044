"""Department evaluation (综合评价) over a time window: cases from the store, formulas from the domain."""
from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
from sqlalchemy import and_, case, func, not_, or_, select

from backend.domain import evaluation
from backend.services import errors
from backend.services.context import current
from backend.store import models as m

CASES = m.Case.__table__
COLUMNS = ["department_id", "dispatched_at", "disposed_at", "closed_at", "cancelled_at", "bundle_deadline_at",
           "rework_count", "postpone_count", "suspended"]


def cases_frame(start: datetime, end: datetime) -> pd.DataFrame:
    """The case columns the formulas need, for cases dispatched in [start, end)."""
    ctx = current()
    c = CASES.c
    q = select(c.department_id, c.dispatched_at, c.disposed_at, c.closed_at, c.cancelled_at,
               c.bundle_deadline_at, c.rework_count, c.postpone_count, (c.status == "suspended")) \
        .where(c.dispatched_at >= start, c.dispatched_at < end)
    with ctx.engine.connect() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("dispatched_at", "disposed_at", "closed_at", "cancelled_at", "bundle_deadline_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    df["suspended"] = df["suspended"].astype(bool)
    return df


def department_counts_sql(start: datetime, end: datetime) -> pd.DataFrame:
    """The counts of `domain.evaluation.department_counts`, aggregated by the database (GROUP BY).

    Same definitions, row for row (a test compares both on the same store): reading a million cases
    into pandas takes seconds, aggregating them in SQL a fraction of that.
    """
    c = CASES.c

    def before_end(col):
        return and_(col.is_not(None), col < end)

    cancelled = before_end(c.cancelled_at)
    susp_now = c.status == "suspended"
    evaluated = and_(not_(cancelled), not_(susp_now))
    disposed = and_(evaluated, before_end(c.disposed_at))
    on_time = and_(disposed, c.bundle_deadline_at.is_not(None), c.disposed_at <= c.bundle_deadline_at)
    closed = and_(evaluated, before_end(c.closed_at))
    reworked = and_(disposed, c.rework_count > 0)
    overdue_open = and_(evaluated, or_(c.disposed_at.is_(None), c.disposed_at >= end),
                        or_(c.closed_at.is_(None), c.closed_at >= end), before_end(c.bundle_deadline_at))

    def count(cond):
        return func.sum(case((cond, 1), else_=0))

    cols = {
        "cases": func.count(), "cancelled": count(cancelled), "suspended": count(and_(not_(cancelled), susp_now)),
        "to_dispose": count(evaluated), "disposed": count(disposed), "disposed_on_time": count(on_time),
        "to_close": count(evaluated), "closed": count(closed), "closed_on_time": count(and_(closed, on_time)),
        "reworked": count(reworked), "rework_times": func.sum(case((reworked, c.rework_count), else_=0)),
        "postponed": count(and_(evaluated, c.postpone_count > 0)), "overdue_open": count(overdue_open),
    }
    q = (select(c.department_id, *[v.label(k) for k, v in cols.items()])
         .where(c.department_id.is_not(None), c.dispatched_at >= start, c.dispatched_at < end)
         .group_by(c.department_id))
    with current().engine.connect() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame(rows, columns=["department_id", *cols])
    df = df.astype({k: "int64" for k in ["department_id", *cols]})
    return df.set_index("department_id").sort_index()


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
