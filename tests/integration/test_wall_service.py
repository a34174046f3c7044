"""The wall's read models (backend.services.wall) over a real store."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from backend.domain import coords
from backend.services import cases, wall
from backend.services.context import Context, use
from tests import support
from tests.conftest import actor, new_case


def test_kpis_count_todays_reports_registrations_dispatches_and_overdue(sqlite_store):
    a = new_case()
    b = new_case()
    new_case()
    cases.apply(a["id"], "register", actor("supervisor"))
    cases.apply(b["id"], "register", actor("supervisor"))
    cases.apply(b["id"], "dispatch", actor("dispatcher"))
    k = wall.kpis()
    assert (k["reported"], k["registered"], k["dispatched"], k["closed"]) == (3, 2, 1, 0)
    assert k["on_time_close_rate"] is None
    assert k["open"] == 3 and k["overdue_open"] == 0
    later = wall.kpis(datetime.now(timezone.utc) + timedelta(days=30))
    assert later["overdue_open"] == 3  # every running clock has passed its deadline by then
    assert later["reported"] == 0      # another day: nothing reported yet


def test_open_cases_are_compact_and_a_department_sees_only_its_own(store):
    a = new_case()
    b = new_case()
    cases.apply(a["id"], "register", actor("supervisor"))
    # dispatched at .9997 s past a second: the milliseconds must not round up into the next second
    at = datetime.now(timezone.utc).replace(microsecond=999700) + timedelta(seconds=1)
    done = cases.apply(a["id"], "dispatch", actor("dispatcher"), at=at)
    everything = {c["id"]: c for c in wall.open_cases()}
    assert set(everything) == {a["id"], b["id"]}
    rec = everything[a["id"]]
    assert rec["n"] == a["case_number"] and rec["s"] == "dispatched" and rec["o"] is True
    assert rec["dl"] == wall.epoch_ms(done["deadline_at"])  # computed by the database, the same to the ms
    assert rec["wa"] == wall.epoch_ms(done["warn_at"]) and rec["st"] == wall.epoch_ms(done["stage_started_at"])
    assert rec["st"] % 1000 == wall._utc(done["stage_started_at"]).microsecond // 1000  # the milliseconds kept
    assert [c["id"] for c in wall.open_cases(department_id=done["department_id"])] == [a["id"]]


def test_sla_board_sorts_by_deadline_marks_levels_and_drops_old_overdue():
    now = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)
    ms = wall.epoch_ms(now)
    rows = [{"id": 1, "o": True, "dl": ms + 60_000, "wa": ms - 1},          # 80% used: amber
            {"id": 2, "o": True, "dl": ms - 5_000, "wa": ms - 50_000},      # just overdue: red
            {"id": 3, "o": True, "dl": ms + 3_600_000, "wa": ms + 1_000},   # in time
            {"id": 4, "o": True, "dl": ms - 3 * 3_600_000, "wa": None},     # overdue for hours: KPI only
            {"id": 5, "o": True, "dl": None, "wa": None}]                   # no clock (挂账)
    board = wall.sla_board(rows, now)
    assert [r["id"] for r in board] == [2, 1, 3]
    assert [r["level"] for r in board] == [2, 1, 0]
    assert board[0]["remaining_ms"] == -5_000


def test_state_holds_cases_lookups_and_the_event_id_it_reflects(sqlite_store):
    first = new_case()
    st = wall.state()
    assert st["event_id"] == wall.last_event_id() and st["event_id"] > 0
    assert st["cases"]["id"] == [first["id"]]
    assert st["classes"]["E0102"] == "暴露垃圾"
    assert st["ticker"][0]["n"] == first["case_number"] and st["ticker"][0]["a"] == "create"
    second = new_case()
    after = wall.events_after(st["event_id"])
    assert [e["case_id"] for e in after] == [second["id"]]
    assert after[0]["type"] == "case.created"


def test_ticker_keeps_report_text_as_data(sqlite_store):
    new_case(description="<script>alert(1)</script> 井盖")
    item = wall.recent_events(1)[0]
    assert item["text"] == "<script>alert(1)</script> 井盖"  # the screen renders it as text, never as HTML


def test_trends_compare_today_with_yesterday(sqlite_store):
    now = datetime.now(timezone.utc)
    new_case(at=now - timedelta(days=1))
    new_case()
    new_case(class_code="E0104")
    tr = wall.trends()
    assert sum(tr["today"]) == 2 and sum(tr["yesterday"]) == 1
    assert {t["code"] for t in tr["top5"]} == {"E0102", "E0104"}
    assert len(tr["hours"]) == 24



def _trends_row_by_row(now: datetime) -> dict:
    """The trends counted case by case in Python: what the database's 15-minute slots must give."""
    from collections import Counter

    from backend.services.context import current
    from backend.store import models as m

    ctx = current()
    today = wall.day_start(now)
    t = m.Case.__table__.c
    with ctx.reader.connect() as conn:
        rows = conn.execute(select(t.created_at, t.class_code).where(t.created_at >= today - timedelta(days=1),
                                                                    t.created_at < now)).all()
    hours = {"today": [0] * 24, "yesterday": [0] * 24}
    major = {"today": Counter(), "yesterday": Counter()}
    top: Counter = Counter()
    for created, code in rows:
        created = wall._utc(created)
        day = "today" if created >= today else "yesterday"
        hours[day][created.astimezone(ctx.calendar.tz).hour] += 1
        name = ctx.catalog.major_of(ctx.catalog.get(code)).name
        if day == "today":
            major[day][name] += 1
            top[code] += 1
        elif created < now - timedelta(days=1):
            major[day][name] += 1
    return {"today": hours["today"][:now.astimezone(ctx.calendar.tz).hour + 1], "yesterday": hours["yesterday"],
            "major_today": dict(major["today"]), "major_yesterday": dict(major["yesterday"]), "top5": dict(top)}


def test_trends_counted_by_the_database_equal_a_case_by_case_count(store):
    """Hours, days and the same-time-of-day cut of yesterday land exactly, to the microsecond, on both databases."""
    now = datetime(2026, 11, 25, 3, 20, tzinfo=timezone.utc)        # 11:20 in Beijing
    midnight = datetime(2026, 11, 24, 16, 0, tzinfo=timezone.utc)   # today 00:00 in Beijing
    us = timedelta(microseconds=1)
    times = [midnight - timedelta(days=1),                            # yesterday's first instant
             midnight - timedelta(hours=16, minutes=1),               # yesterday 07:59
             now - timedelta(days=1) - us, now - timedelta(days=1),   # either side of the fair-comparison cut
             now - timedelta(days=1) + timedelta(minutes=5),
             midnight - us, midnight, midnight + timedelta(minutes=59, seconds=59, microseconds=999999),
             midnight + timedelta(hours=1), now - timedelta(minutes=14), now - us]
    for k, at in enumerate(times):
        new_case(class_code=("E0102", "E0104", "C0101")[k % 3], at=at)
    new_case(at=now)  # not before `now`: not counted
    got, want = wall.trends(now), _trends_row_by_row(now)
    assert got["today"] == want["today"] and got["yesterday"] == want["yesterday"]
    assert dict(zip(got["majors"], got["major_today"])) == {k: v for k, v in want["major_today"].items()} | {
        k: 0 for k in got["majors"] if k not in want["major_today"]}
    assert dict(zip(got["majors"], got["major_yesterday"])) == want["major_yesterday"] | {
        k: 0 for k in got["majors"] if k not in want["major_yesterday"]}
    assert {x["code"]: x["count"] for x in got["top5"]} == want["top5"]
    assert sum(got["today"]) == 5 and sum(got["yesterday"]) == 6


def test_display_coordinates_follow_the_tile_source(tmp_path, sqlite_store):
    lat, lon = support.inside()
    assert wall.display_point(lat, lon) == (round(lat, 6), round(lon, 6))
    gcj = Context.from_config(support.make_config(tmp_path, sqlite_store.config.effective_database_url,
                                                  sqlite_store.config.redis_url, tile_crs="gcj02"))
    try:
        got = wall.display_point(lat, lon, gcj)
        want = coords.wgs84_to_gcj02(lat, lon)
        assert got == (round(want[0], 6), round(want[1], 6)) and got != (round(lat, 6), round(lon, 6))
    finally:
        gcj.close()
        use(sqlite_store)
