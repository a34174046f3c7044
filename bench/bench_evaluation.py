"""Benchmark of 专业部门 综合评价: vectorised `evaluate_departments` against a naive row loop.

Run from the repository root: `.venv/bin/python bench/bench_evaluation.py`
Builds 1,000,000 synthetic cases over 20 departments, times `evaluate_departments` (median of 5),
times a naive row-by-row Python loop over a 100,000-row sample, extrapolates it to 1M and prints
the ratio. The goal is under 1 s for 1M cases.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.domain.evaluation import (  # noqa: E402
    DEPARTMENT_CASE_ABOVE,
    DEPARTMENT_CASE_BANDS,
    DEPARTMENT_WEIGHTS,
    evaluate_departments,
)

N_CASES = 1_000_000
N_SAMPLE = 100_000
N_DEPARTMENTS = 20
REPEATS = 5
START = pd.Timestamp("2024-03-01", tz="UTC")
END = pd.Timestamp("2024-04-01", tz="UTC")


def synthetic_cases(n: int, seed: int = 7) -> pd.DataFrame:
    """n cases dispatched from a week before the window to a week after it."""
    rng = np.random.default_rng(seed)
    span_hours = (END - START).total_seconds() / 3600 + 14 * 24

    def hours(values: np.ndarray) -> pd.TimedeltaIndex:
        return pd.to_timedelta(values, unit="h")

    dispatched = START - pd.Timedelta(days=7) + hours(rng.uniform(0, span_hours, n))
    deadline = dispatched + hours(rng.choice([2, 4, 24, 72, 120], n))
    disposed = pd.Series(dispatched + hours(rng.exponential(30, n))).where(rng.random(n) < 0.92)
    closed = (disposed + hours(rng.uniform(0.5, 12, n))).where(rng.random(n) < 0.9)
    cancelled = pd.Series(dispatched + hours(rng.uniform(0, 6, n))).where(rng.random(n) < 0.02)
    department = rng.integers(1, N_DEPARTMENTS + 1, n).astype(float)
    department[rng.random(n) < 0.01] = np.nan
    return pd.DataFrame({
        "department_id": department,
        "dispatched_at": dispatched,
        "disposed_at": disposed,
        "closed_at": closed,
        "cancelled_at": cancelled,
        "bundle_deadline_at": deadline,
        "rework_count": rng.poisson(0.05, n),
        "postpone_count": rng.poisson(0.03, n),
        "suspended": rng.random(n) < 0.01,
    })


def naive_evaluate(cases: pd.DataFrame) -> dict[int, float | None]:
    """The same scores by a plain Python loop over rows, as a reference for speed and values."""
    counts: dict[int, list[int]] = {}  # cases, to_dispose, disposed, on_time, closed, reworked
    for row in cases.itertuples(index=False):
        if pd.isna(row.department_id) or pd.isna(row.dispatched_at):
            continue
        if not START <= row.dispatched_at < END:
            continue
        c = counts.setdefault(int(row.department_id), [0, 0, 0, 0, 0, 0])
        c[0] += 1
        if (not pd.isna(row.cancelled_at) and row.cancelled_at < END) or row.suspended:
            continue
        c[1] += 1
        disposed = not pd.isna(row.disposed_at) and row.disposed_at < END
        if disposed:
            c[2] += 1
            if not pd.isna(row.bundle_deadline_at) and row.disposed_at <= row.bundle_deadline_at:
                c[3] += 1
            if row.rework_count > 0:
                c[5] += 1
        if not pd.isna(row.closed_at) and row.closed_at < END:
            c[4] += 1
    scores: dict[int, float | None] = {}
    for dept, (n, to_dispose, disposed, on_time, closed, reworked) in counts.items():
        if to_dispose == 0:
            scores[dept] = None
            continue
        band = next((s for upper, s in DEPARTMENT_CASE_BANDS if n <= upper), DEPARTMENT_CASE_ABOVE)
        rework_rate = reworked / disposed if disposed else 0.0
        raw = (
            band * DEPARTMENT_WEIGHTS["cases_score"]
            + closed / to_dispose * 100 * DEPARTMENT_WEIGHTS["close_score"]
            + on_time / to_dispose * 100 * DEPARTMENT_WEIGHTS["on_time_dispose_score"]
            + (1 - rework_rate) * 100 * DEPARTMENT_WEIGHTS["rework_score"]
        ) / 100
        scores[dept] = round(raw, 2)
    return scores


def main() -> None:
    print(f"building {N_CASES:,} synthetic cases over {N_DEPARTMENTS} departments ...")
    cases = synthetic_cases(N_CASES)

    timings = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        result = evaluate_departments(cases, START, END)
        timings.append(time.perf_counter() - began)
    vectorised = statistics.median(timings)
    in_window = int(result["cases"].sum())

    sample = cases.sample(N_SAMPLE, random_state=1)
    began = time.perf_counter()
    naive_scores = naive_evaluate(sample)
    naive_sample = time.perf_counter() - began
    naive_full = naive_sample * N_CASES / N_SAMPLE

    sample_scores = evaluate_departments(sample, START, END)["score"]
    agree = all(
        (naive_scores[d] is None and pd.isna(s)) or abs((naive_scores[d] or 0.0) - s) < 1e-9
        for d, s in sample_scores.items()
    )

    print(f"cases in window:                 {in_window:,}")
    print(f"evaluate_departments, 1M rows:   median {vectorised:.3f} s of {REPEATS} "
          f"(min {min(timings):.3f}, max {max(timings):.3f})")
    print(f"naive row loop, {N_SAMPLE:,} rows:   {naive_sample:.3f} s")
    print(f"naive row loop, extrapolated 1M: {naive_full:.1f} s")
    print(f"speed-up:                        {naive_full / vectorised:.0f}x")
    print(f"goal < 1 s for 1M:               {'met' if vectorised < 1.0 else 'NOT met'}")
    print(f"naive and vectorised scores agree on the sample: {agree}")
    print(result[["cases", "to_dispose", "close_rate", "on_time_dispose_rate", "rework_rate",
                  "score", "grade", "rank"]].head(5).to_string())


if __name__ == "__main__":
    main()
