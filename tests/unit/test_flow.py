"""The case flow generator (backend.sim.flow) against an in-memory case service.

``FakeCases`` offers the calls of ``backend.services.cases`` (create, apply, query) and enforces the
same transitions by asking ``domain.lifecycle.decide``; it refuses time going backwards for a case.
Every refusal is recorded, so a flow that tries an action the lifecycle forbids fails these tests.
"""
from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from backend.domain import lifecycle
from backend.domain.catalog import default_catalog
from backend.domain.grid import Responsibilities, ResponsibilityRule
from backend.services import errors
from backend.sim.city import build_city
from backend.sim.flow import Flow, FlowMix

NOW = datetime(2026, 3, 20, 10, 0, tzinfo=timezone.utc)
UNIT_SECONDS = {"work_hour": 3600.0, "urgent_hour": 3600.0, "work_day": 8 * 3600.0, "natural_day": 86400.0}
CJK = re.compile(r"[\u4e00-\u9fff]")


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


class FakeCases:
    """In-memory stand-in for backend.services.cases with a continuous (24 h) clock."""

    def __init__(self, city) -> None:
        self.city = city
        self.catalog = default_catalog()
        self.departments = {k + 1: d for k, d in enumerate(city.departments)}
        ids = {d["code"]: k for k, d in self.departments.items()}
        self.rules = Responsibilities([ResponsibilityRule(ids[r["department_code"]], r["grid_prefix"],
                                                          r["class_prefix"]) for r in city.responsibilities])
        self.rows: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.queries = 0

    def _limit(self, row: dict, stage: str) -> timedelta:
        limit = self.catalog.get(row["class_code"]).limits[stage]
        return timedelta(seconds=limit.value * UNIT_SECONDS[limit.clock])

    def _refuse(self, exc: Exception) -> Exception:
        self.refused.append(str(exc))
        return exc

    def create(self, data: dict, actor: lifecycle.Actor, at: datetime | None = None) -> dict:
        at = at or datetime.now(timezone.utc)
        try:
            status = lifecycle.report_status(actor, data["source"])
        except lifecycle.Forbidden as exc:
            raise self._refuse(errors.Forbidden(str(exc)))
        case_class = self.catalog.get(data["class_code"])
        grid = self.city.grid_at(data["lat"], data["lon"])
        if grid is None:
            raise self._refuse(errors.BadInput("the location is outside the city's unit grids"))
        if not data.get("description"):
            raise self._refuse(errors.BadInput("missing description"))
        case_id = len(self.rows) + 1
        row = {
            "id": case_id, "case_number": f"{case_class.key}{case_id:08d}", "class_code": case_class.key,
            "source": data["source"], "status": status, "description": data["description"],
            "address": data.get("address", ""), "lat": data["lat"], "lon": data["lon"], "grid_code": grid,
            "street_code": grid[:9], "community_code": grid[:12], "component_code": data.get("component_code"),
            "department_id": None, "suggested_department_id": self.rules.suggest(grid, case_class.key),
            "pending": None, "pending_payload": None, "created_at": at, "updated_at": at, "dispatched_at": None,
            "disposed_at": None, "closed_at": None, "stage": None, "stage_started_at": None, "deadline_at": None,
            "bundle_deadline_at": None, "suspended_at": None, "postpone_count": 0, "rework_count": 0,
            "return_count": 0, "supervise_count": 0, "close_type": None, "version": 1, "reporter": actor.username,
        }
        self._start_stage(row, lifecycle.STAGE_OF_STATUS.get(status), at)
        self.rows[case_id] = row
        self.events.append({"case_id": case_id, "action": "create", "actor": actor.username, "role": actor.role,
                            "at": at, "from": None, "to": status})
        return self._out(row)

    def _start_stage(self, row: dict, stage: str | None, at: datetime) -> None:
        row["stage"], row["stage_started_at"] = stage, at
        row["deadline_at"] = at + self._limit(row, stage) if stage else None

    def apply(self, case_id: int, action: str, actor: lifecycle.Actor, payload: dict | None = None,
              at: datetime | None = None) -> dict:
        row = self.rows.get(case_id)
        if row is None:
            raise self._refuse(errors.NotFound(f"case {case_id} does not exist"))
        at = at or datetime.now(timezone.utc)
        if at < row["updated_at"]:
            raise self._refuse(errors.BadInput(f"case {case_id}: {action} at {at} before {row['updated_at']}"))
        try:
            decision = lifecycle.decide(lifecycle.CaseView.from_record(row), action, actor, payload)
        except lifecycle.LifecycleError as exc:
            raise self._refuse(errors.Conflict(f"case {case_id} ({row['status']}): {exc}"))
        old_status = row["status"]
        row.update(decision.changes)
        row["status"] = decision.to_status
        for effect in decision.effects:
            self._effect(row, effect, decision, at)
        row["updated_at"] = at
        row["version"] += 1
        self.events.append({"case_id": case_id, "action": action, "actor": actor.username, "role": actor.role,
                            "at": at, "from": old_status, "to": row["status"],
                            "department_id": actor.department_id})
        return self._out(row)

    def _effect(self, row: dict, effect: str, decision: lifecycle.Decision, at: datetime) -> None:
        if effect == "suggest_department":
            row["department_id"] = row["suggested_department_id"]
        elif effect == "start_bundle":
            row["bundle_deadline_at"] = at + self._limit(row, "dispose")
            row["dispatched_at"] = row["dispatched_at"] or at
        elif effect.startswith("start_stage:"):
            self._start_stage(row, effect.split(":", 1)[1], at)
        elif effect.startswith("stop_stage:"):
            row["stage"] = row["deadline_at"] = None
        elif effect == "clear_bundle":
            row["bundle_deadline_at"] = None
        elif effect == "extend_bundle":
            hours = decision.payload.get("hours")
            extra = timedelta(hours=hours) if hours else self._limit(row, "dispose")
            row["bundle_deadline_at"] += extra
            row["deadline_at"] = row["bundle_deadline_at"]
        elif effect == "record_disposed":
            row["disposed_at"] = at
        elif effect == "pause_clock":
            row["suspended_at"], row["deadline_at"] = at, None
        elif effect == "resume_clock":
            row["bundle_deadline_at"] += at - row["suspended_at"]
            row["deadline_at"], row["suspended_at"] = row["bundle_deadline_at"], None
        elif effect == "set_close_type":
            bundle, disposed = row["bundle_deadline_at"], row["disposed_at"]
            row["close_type"] = "normal" if bundle is None or disposed <= bundle else "overtime"
        if decision.to_status == "closed":
            row["closed_at"] = at

    def _out(self, row: dict) -> dict:
        out = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in row.items()}
        department = self.departments.get(row["department_id"])
        out["department_name"] = department["name"] if department else None
        return out

    def query(self, statuses: list[str] | None = None, limit: int = 1000) -> list[dict]:
        self.queries += 1
        wanted = set(statuses or lifecycle.OPEN_STATUSES)
        return [self._out(r) for r in sorted(self.rows.values(), key=lambda r: r["id"])
                if r["status"] in wanted][:limit]

    def actions(self, case_id: int) -> list[str]:
        return [e["action"] for e in self.events if e["case_id"] == case_id]


@pytest.fixture(scope="module")
def city():
    return build_city()


@pytest.fixture(scope="module")
def history(city):
    """Two weeks of backfilled history (about 1,000 cases)."""
    fake = FakeCases(city)
    created = Flow(city, rate_per_minute=1, seed=11, service=fake).backfill(days=14, now=NOW, per_day=80)
    return fake, created


def test_the_fake_enforces_the_lifecycle(city):
    fake = FakeCases(city)
    lat, lon = city.random_point_in_grid(city.grid_codes()[0], __import__("random").Random(1))
    case = fake.create({"class_code": "E0102", "lat": lat, "lon": lon, "description": "暴露垃圾",
                        "source": "public"}, lifecycle.Actor("public", "public"), at=NOW)
    with pytest.raises(errors.Conflict):
        fake.apply(case["id"], "close", lifecycle.Actor("supervisor", "supervisor"), at=NOW)
    with pytest.raises(errors.BadInput):
        fake.apply(case["id"], "send_verify", lifecycle.Actor("op", "operator"), at=NOW - timedelta(hours=1))
    assert len(fake.refused) == 2


def test_backfill_writes_history_without_a_single_refused_action(history):
    fake, created = history
    assert created == len(fake.rows) and 800 <= created <= 1300
    assert fake.refused == []
    times = [e["at"] for e in fake.events]
    assert times == sorted(times)  # written in time order, across cases too
    assert NOW - timedelta(days=14) <= times[0] and times[-1] <= NOW


def test_backfill_closes_most_cases_on_time(history):
    fake, _ = history
    old = [r for r in fake.rows.values() if r["created_at"] < NOW - timedelta(days=4)]
    status = Counter(r["status"] for r in old)
    assert status["closed"] / len(old) > 0.85
    assert 0.02 <= status["cancelled"] / len(old) <= 0.09
    closed = [r for r in old if r["status"] == "closed" and r["close_type"] != "self"]
    on_time = sum(r["close_type"] == "normal" for r in closed) / len(closed)
    assert 0.78 <= on_time <= 0.96  # ~10% are left to go overdue


def test_backfill_takes_every_branch_in_realistic_shares(history):
    fake, _ = history
    dispatched = [r for r in fake.rows.values() if r["dispatched_at"] is not None]
    share = lambda n: n / len(dispatched)  # noqa: E731
    assert 0.04 <= share(sum(r["rework_count"] > 0 for r in dispatched)) <= 0.13
    assert 0.02 <= share(sum(r["postpone_count"] > 0 for r in dispatched)) <= 0.09
    assert 0.015 <= share(sum(r["return_count"] > 0 for r in dispatched)) <= 0.08
    actions = Counter(e["action"] for e in fake.events)
    assert 0.01 <= share(actions["approve_suspend"]) <= 0.06
    assert actions["resume"] >= 1 and actions["reject_postpone"] + actions["reject_return"] >= 1
    assert actions["self_handle"] >= 5 and actions["send_verify"] >= 100
    leaders = [e for e in fake.events if e["role"] == "leader"]
    assert leaders and all(e["action"] == "supervise" for e in leaders)
    # a returned case is dispatched again to the suggested department
    returned = [r for r in dispatched if r["return_count"] > 0 and r["status"] == "closed"]
    assert returned and all(r["department_id"] == r["suggested_department_id"] for r in returned)


def test_reports_follow_the_source_and_class_mix(history, city):
    fake, _ = history
    rows = list(fake.rows.values())
    sources = Counter(r["source"] for r in rows)
    assert 0.53 <= sources["inspector"] / len(rows) <= 0.67
    assert 0.15 <= sources["public"] / len(rows) <= 0.25
    assert sources["hotline"] and sources["video"] and sources["superior"]
    classes = Counter(r["class_code"] for r in rows)
    assert classes.most_common(1)[0][0] in ("E0102", "E0201", "E0104")
    by_code = {c["code"]: c for c in city.components}
    for row in rows:
        assert CJK.search(row["description"]) and row["address"].startswith("东城区")
        if row["source"] == "inspector":
            assert row["reporter"] == city.duty_inspector(row["grid_code"])
        if row["component_code"]:
            component = by_code[row["component_code"]]
            assert component["class_code"] == row["class_code"] and component["grid_code"] == row["grid_code"]


def test_department_actions_carry_the_case_department(history):
    fake, _ = history
    department_events = [e for e in fake.events if e["role"] == "department"]
    assert len(department_events) > 1000
    assert all(isinstance(e["department_id"], int) for e in department_events)


def test_step_creates_reports_and_counts_what_it_did(city):
    fake = FakeCases(city)
    flow = Flow(city, rate_per_minute=2, seed=3, service=fake)
    moment = NOW
    for _ in range(180):
        before = len(fake.events)
        moment += timedelta(minutes=1)
        assert flow.step(moment) == len(fake.events) - before
    created = sum(e["action"] == "create" for e in fake.events)
    assert 250 <= created <= 470  # 2 a minute for 3 hours
    assert fake.refused == []
    assert Counter(r["status"] for r in fake.rows.values())["closed"] > 0


def test_frequent_steps_read_the_open_cases_only_when_something_is_due(city):
    fake = FakeCases(city)
    flow = Flow(city, rate_per_minute=0.5, seed=4, service=fake, max_idle_seconds=30)
    moment, steps = NOW, 0
    while moment < NOW + timedelta(hours=3):
        moment += timedelta(seconds=2)
        flow.step(moment)
        steps += 1
    assert fake.queries < steps / 5
    assert fake.refused == []
    still_open = [r for r in fake.rows.values() if r["status"] not in ("closed", "cancelled")]
    late = [r for r in still_open if flow.next_move(fake._out(r)).due < moment - timedelta(seconds=31)]
    assert late == []  # nothing due was left waiting longer than the idle limit
    assert Counter(r["status"] for r in fake.rows.values())["closed"] > 0
    with pytest.raises(ValueError):
        Flow(city, 1, service=fake, max_idle_seconds=-1)


def test_a_new_flow_continues_the_open_cases_of_an_earlier_one(city):
    fake = FakeCases(city)
    Flow(city, rate_per_minute=1, seed=5, service=fake).backfill(days=2, now=NOW, per_day=40)
    still_open = {r["id"] for r in fake.rows.values() if r["status"] in lifecycle.OPEN_STATUSES}
    assert len(still_open) >= 5
    restarted = Flow(city, rate_per_minute=0, seed=5, service=fake)  # nothing kept in memory
    moment = NOW
    for _ in range(24 * 25):
        moment += timedelta(hours=1)
        restarted.step(moment)
    assert fake.refused == []
    assert all(fake.rows[i]["status"] in ("closed", "cancelled") for i in still_open)
    assert all(fake.actions(i)[-1] in ("close", "cancel", "self_handle") for i in still_open)


def test_same_seed_same_history(city):
    def run() -> list[tuple]:
        fake = FakeCases(city)
        Flow(city, rate_per_minute=1, seed=21, service=fake).backfill(days=2, now=NOW, per_day=30)
        return [(e["case_id"], e["action"], e["actor"], e["at"]) for e in fake.events]
    assert run() == run()


def test_bad_arguments_are_refused(city):
    fake = FakeCases(city)
    with pytest.raises(ValueError):
        Flow(city, rate_per_minute=-1, service=fake)
    with pytest.raises(ValueError):
        Flow(city, rate_per_minute=float("nan"), service=fake)
    with pytest.raises(ValueError):
        Flow(city, rate_per_minute=1, seed="x", service=fake)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FlowMix(cancel=1.5)
    with pytest.raises(ValueError):
        Flow(city, 1, service=fake, mix=FlowMix(classes={"E9999": 1.0}))
    flow = Flow(city, rate_per_minute=1, service=fake)
    with pytest.raises(ValueError):
        flow.backfill(days=-1, now=NOW, per_day=10)
    with pytest.raises(ValueError):
        flow.backfill(days=1, now=NOW, per_day=-5)
    with pytest.raises(ValueError):
        flow.step("now")  # type: ignore[arg-type]
