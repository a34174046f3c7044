"""The case flow generator (案件流模拟): keeps cases moving through the whole lifecycle.

It writes only through the case service (``create``, ``apply``, ``query``), acting as the
people of the demo city: inspectors (监督员) report, verify (核实) and check (核查); the operator
(受理员) accepts reports and sends them to verification; the supervisor (值班长) registers
(立案), cancels (作废) and closes (结案); the dispatcher (派遣员) dispatches (派遣) and decides
applications; departments (专业部门) sign, handle and report back, sometimes asking to return
(回退), postpone (延期) or suspend (挂账); a leader (领导) urges some cases on (督办).

Restart-safe: every decision is derived from the case as the service returns it. Each case has a
*fate* drawn from ``(seed, case id)`` (will it be cancelled, reworked, postponed, …) and each
step of it a delay drawn from ``(seed, case id, version)``, counted from the case's
``updated_at``. A new :class:`Flow` on an existing store reads the open cases with ``query`` and
continues them exactly where they are; the only in-memory state is the arrival clock of new
reports and the department ids seen so far.
"""
from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, Protocol

from backend.domain.catalog import Catalog, default_catalog
from backend.domain.lifecycle import OPEN_STATUSES, Actor, LifecycleError
from backend.services.errors import ServiceError
from backend.sim import names
from backend.sim.city import City

log = logging.getLogger(__name__)

LOCAL_TZ = timezone(timedelta(hours=8))
"""Asia/Shanghai (no daylight saving), for the daily rhythm of reports."""

HOUR_WEIGHTS: tuple[float, ...] = (
    0.2, 0.1, 0.1, 0.1, 0.1, 0.3, 0.8, 1.6, 2.4, 2.6, 2.5, 2.2,
    1.4, 1.3, 2.2, 2.4, 2.3, 2.0, 1.4, 1.0, 0.9, 0.7, 0.5, 0.3,
)
"""Relative number of reports per local hour of the day (inspectors patrol in the daytime)."""

COMMON_CLASSES: dict[str, float] = {
    "E0102": 14, "E0201": 12, "E0104": 10, "E0504": 9, "E0505": 8, "E0506": 6, "E0507": 6,
    "E0501": 4, "E0103": 3, "E0108": 3, "E0112": 2, "E0110": 2, "E0203": 2, "E0511": 1.5,
    "E0510": 1, "E0302": 1, "E0304": 1, "E0301": 1, "E0404": 1, "E0406": 0.5, "E0107": 1,
    "C0118": 4, "C0305": 3, "C0102": 2, "C0103": 1.5, "C0101": 1, "C0104": 1, "C0105": 0.5,
    "C0402": 1.5, "C0301": 1.5, "C0209": 1, "C0211": 0.8, "C0213": 0.6, "C0113": 0.5, "C0203": 0.5,
}
"""Class weights of reports: 暴露垃圾, 非法小广告, 道路不洁, 店外经营, 机动车乱停放 … lead."""

VIDEO_CLASSES: dict[str, float] = {"E0505": 5, "E0504": 4, "E0501": 3, "E0102": 3, "E0506": 2, "E0507": 1}
"""What the video AI (视频智能识别) reports, near a camera."""


@dataclass(frozen=True)
class FlowMix:
    """The configurable mix of the flow. Shares are fractions of cases (0..1)."""

    sources: Mapping[str, float] = field(default_factory=lambda: {
        "inspector": 0.60, "public": 0.20, "hotline": 0.10, "video": 0.05, "superior": 0.05})
    classes: Mapping[str, float] = field(default_factory=lambda: dict(COMMON_CLASSES))
    other_class_weight: float = 0.05
    cancel: float = 0.05
    self_handle: float = 0.03  # of inspector reports: 自行处置 on the spot
    rework: float = 0.08
    postpone: float = 0.05
    suspend: float = 0.03
    misdispatch: float = 0.04  # dispatched to a wrong department, which returns it (回退)
    overdue: float = 0.10
    supervise: float = 0.03
    reject_application: float = 0.12

    def __post_init__(self) -> None:
        for name in ("cancel", "self_handle", "rework", "postpone", "suspend", "misdispatch", "overdue",
                     "supervise", "reject_application"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"FlowMix.{name} must be a share between 0 and 1, got {value!r}")
        for label, weights in (("sources", self.sources), ("classes", self.classes)):
            if not weights or any(not isinstance(w, (int, float)) or w < 0 for w in weights.values()):
                raise ValueError(f"FlowMix.{label} must map names to non-negative weights")
            if sum(weights.values()) <= 0:
                raise ValueError(f"FlowMix.{label} needs at least one positive weight")
        if self.other_class_weight < 0:
            raise ValueError("FlowMix.other_class_weight must be >= 0")


@dataclass(frozen=True)
class Fate:
    """What will happen to one case (drawn once from the seed and the case id)."""

    cancel: bool
    self_handle: bool
    rework: bool
    postpone: bool
    suspend: bool
    misdispatch: bool
    overdue: bool
    supervise: bool


@dataclass(frozen=True)
class Move:
    """The next action of a case: when, what, by whom, with what payload."""

    due: datetime
    action: str
    actor: Actor
    payload: dict[str, Any]


class CaseService(Protocol):
    """The part of ``backend.services.cases`` the flow uses."""

    def create(self, data: dict, actor: Actor, at: datetime | None = None) -> dict: ...

    def apply(self, case_id: int, action: str, actor: Actor, payload: dict | None = None,
              at: datetime | None = None) -> dict: ...

    def query(self, statuses: list[str] | None = None, limit: int = 1000) -> list[dict]: ...


def parse_time(value: Any) -> datetime | None:
    """A service time (ISO string with Z, or datetime) as an aware UTC datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    else:
        raise ValueError(f"not a time: {value!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _aware(now: datetime) -> datetime:
    if not isinstance(now, datetime):
        raise ValueError(f"now must be a datetime, got {now!r}")
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


OPEN = sorted(OPEN_STATUSES)
_ERRORS = (ServiceError, LifecycleError, ValueError)


class Flow:
    """Generates reports and moves every open case forward (案件流).

    ``rate_per_minute`` new reports per minute in live mode (:meth:`step`); :meth:`backfill`
    writes a history with backdated times. ``service`` defaults to ``backend.services.cases``.
    """

    def __init__(self, city: City, rate_per_minute: float, seed: int = 0,
                 service: CaseService | ModuleType | None = None, mix: FlowMix | None = None,
                 catalog: Catalog | None = None, query_limit: int = 5000,
                 max_idle_seconds: float = 30.0) -> None:
        if isinstance(rate_per_minute, bool) or not isinstance(rate_per_minute, (int, float)) \
                or not math.isfinite(rate_per_minute) or rate_per_minute < 0:
            raise ValueError(f"rate_per_minute must be a finite number >= 0, got {rate_per_minute!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if isinstance(max_idle_seconds, bool) or not isinstance(max_idle_seconds, (int, float)) \
                or not 0 <= max_idle_seconds < math.inf:
            raise ValueError(f"max_idle_seconds must be a finite number >= 0, got {max_idle_seconds!r}")
        if service is None:
            from backend.services import cases as service  # the real one: only when needed
        self.city = city
        self.rate_per_minute = float(rate_per_minute)
        self.seed = seed
        self.service = service
        self.mix = mix or FlowMix()
        self.catalog = catalog or default_catalog()
        self.query_limit = query_limit
        self.max_idle = timedelta(seconds=max_idle_seconds)
        self._quiet_until: datetime | None = None  # no known case action is due before this
        self._rng = random.Random(f"{seed}:arrivals")
        self._next_arrival: datetime | None = None
        self._known_departments: set[int] = set()
        self._failed: set[tuple[int, Any]] = set()
        self._operators = [u["username"] for u in city.users_with_role("operator")] or ["operator"]
        self._supervisor = (city.users_with_role("supervisor") or [{"username": "supervisor"}])[0]["username"]
        self._dispatcher = (city.users_with_role("dispatcher") or [{"username": "dispatcher"}])[0]["username"]
        self._leader = (city.users_with_role("leader") or [{"username": "leader"}])[0]["username"]
        self._dept_user_by_name = {d["name"]: f"dept_{d['code']}" for d in city.departments}
        self._dept_type_by_name = {d["name"]: d["type"] for d in city.departments}
        self._grid_codes = city.grid_codes()
        self._components_by_class: dict[str, list[dict[str, Any]]] = {}
        for component in city.components:
            self._components_by_class.setdefault(component["class_code"], []).append(component)
        known = {c.key for c in self.catalog.classes}
        unknown = [k for k in list(self.mix.classes) + list(VIDEO_CLASSES) if k not in known]
        if unknown:
            raise ValueError(f"unknown class codes in the flow mix: {', '.join(sorted(set(unknown)))}")
        weights = {c.key: self.mix.other_class_weight for c in self.catalog.classes}
        weights.update(self.mix.classes)
        self._class_keys = [k for k, w in weights.items() if w > 0]
        self._class_weights = [weights[k] for k in self._class_keys]

    # --- live mode ------------------------------------------------------------------------
    def step(self, now: datetime) -> int:
        """Create the reports due by ``now`` and take every case action due by ``now``.

        Returns the number of writes (reports created + actions applied). The open cases are
        read again when the earliest action seen at the last reading is due, and at least every
        ``max_idle_seconds`` (cases also change through other clients).
        """
        now = _aware(now)
        done = self._arrivals(now)
        if self._quiet_until is not None and now < self._quiet_until:
            return done
        quiet_until = now + self.max_idle
        open_cases = self.service.query(statuses=OPEN, limit=self.query_limit)
        for case in open_cases:
            self._remember(case)
        for case in open_cases:
            move = self.next_move(case)
            if move is None:
                continue
            if move.due > now:
                quiet_until = min(quiet_until, move.due)
                continue
            after = self._apply(case, move, at=now)
            if after is not None:
                done += 1
                following = self.next_move(after)
                if following is not None:
                    quiet_until = min(quiet_until, following.due)
        self._quiet_until = quiet_until
        return done

    def _arrivals(self, now: datetime) -> int:
        if self.rate_per_minute <= 0:
            return 0
        if self._next_arrival is None:
            self._next_arrival = now + self._gap()
            return 0
        cap = max(1, math.ceil(self.rate_per_minute * 10))
        created = 0
        while self._next_arrival <= now and created < cap:
            if self._create(now) is not None:
                created += 1
            self._next_arrival += self._gap()
        if self._next_arrival <= now:  # fell behind (the flow was paused): do not flood
            self._next_arrival = now + self._gap()
        return created

    def _gap(self) -> timedelta:
        return timedelta(minutes=self._rng.expovariate(self.rate_per_minute))

    # --- history ----------------------------------------------------------------------------
    def backfill(self, days: int, now: datetime, per_day: int) -> int:
        """Write ``days`` days of history before ``now``: about ``per_day`` reports a day (fewer
        at weekends and at night), each moved through its lifecycle with backdated times.

        All writes happen in time order (also across cases). Cases whose next step falls after
        ``now`` stay open for :meth:`step`. Returns the number of reports created.
        """
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValueError(f"days must be an integer >= 0, got {days!r}")
        if isinstance(per_day, bool) or not isinstance(per_day, int) or per_day < 0:
            raise ValueError(f"per_day must be an integer >= 0, got {per_day!r}")
        now = _aware(now)
        rng = random.Random(f"{self.seed}:backfill")
        # (time, tie-breaker, case before the move or None for a new report, move)
        queue: list[tuple[datetime, int, dict | None, Move | None]] = []
        order = 0
        for moment in self._report_times(days, now, per_day, rng):
            queue.append((moment, order, None, None))
            order += 1
        heapq.heapify(queue)
        created = 0
        while queue:
            moment, _, before, move = heapq.heappop(queue)
            if before is None or move is None:
                case = self._create(moment, rng)
                if case is None:
                    continue
                created += 1
            else:
                case = self._apply(before, move, at=moment)
                if case is None:
                    continue
            self._remember(case)
            following = self.next_move(case)
            if following is not None and following.due <= now:
                order += 1
                heapq.heappush(queue, (following.due, order, case, following))
        return created

    def _report_times(self, days: int, now: datetime, per_day: int, rng: random.Random) -> list[datetime]:
        times: list[datetime] = []
        local_now = now.astimezone(LOCAL_TZ)
        first_day = local_now.date() - timedelta(days=days)
        for offset in range(days + 1):
            day = first_day + timedelta(days=offset)
            factor = 0.75 if day.weekday() >= 5 else 1.0
            count = round(per_day * factor * rng.uniform(0.9, 1.1))
            midnight = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)
            for _ in range(count):
                hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
                moment = midnight + timedelta(hours=hour, seconds=rng.uniform(0, 3600))
                utc = moment.astimezone(timezone.utc)
                if now - timedelta(days=days) <= utc <= now:
                    times.append(utc)
        return sorted(times)

    # --- creating reports ---------------------------------------------------------------------
    def _create(self, at: datetime, rng: random.Random | None = None) -> dict | None:
        rng = rng or self._rng
        data, actor = self.new_report(rng)
        try:
            case = self.service.create(data, actor, at=at)
        except _ERRORS as exc:
            log.warning("flow: report refused: %s", exc)
            return None
        self._remember(case)
        if self._quiet_until is not None:
            move = self.next_move(case)
            if move is not None:
                self._quiet_until = min(self._quiet_until, move.due)
        return case

    def new_report(self, rng: random.Random) -> tuple[dict[str, Any], Actor]:
        """A random report (上报) and who files it: source, class, place, Chinese description."""
        source = rng.choices(list(self.mix.sources), list(self.mix.sources.values()))[0]
        component = None
        if source == "video" and self.city.cameras:
            class_key = rng.choices(list(VIDEO_CLASSES), list(VIDEO_CLASSES.values()))[0]
            lat, lon, grid_code = self._near_camera(rng)
        else:
            class_key = rng.choices(self._class_keys, self._class_weights)[0]
            candidates = self._components_by_class.get(class_key)
            if candidates:
                component = rng.choice(candidates)
                lat, lon, grid_code = component["lat"], component["lon"], component["grid_code"]
            else:
                grid_code = rng.choice(self._grid_codes)
                lat, lon = self.city.random_point_in_grid(grid_code, rng)
        case_class = self.catalog.get(class_key)
        place = self.city.place_name(lat, lon)
        data: dict[str, Any] = {
            "class_code": class_key, "lat": lat, "lon": lon, "source": source,
            "description": names.describe(class_key, case_class.name, place, rng),
            "address": self.city.address(lat, lon),
        }
        if component is not None:
            data["component_code"] = component["code"]
        if source == "inspector":
            actor = Actor(self.city.duty_inspector(grid_code), "inspector")
        elif source == "public":
            actor = Actor("public", "public")
        elif source == "video":
            actor = Actor("system", "system")
        else:
            actor = Actor(rng.choice(self._operators), "operator")
        return data, actor

    def _near_camera(self, rng: random.Random) -> tuple[float, float, str]:
        for _ in range(20):
            camera = rng.choice(self.city.cameras)
            lat = camera["lat"] + rng.uniform(-0.0004, 0.0004)
            lon = camera["lon"] + rng.uniform(-0.0005, 0.0005)
            code = self.city.grid_at(lat, lon)
            if code is not None:
                return round(lat, 6), round(lon, 6), code
        code = rng.choice(self._grid_codes)
        lat, lon = self.city.random_point_in_grid(code, rng)
        return lat, lon, code

    # --- moving cases -------------------------------------------------------------------------
    def fate(self, case_id: int) -> Fate:
        """The fate of a case: a pure function of the seed and the case id."""
        r = random.Random(f"{self.seed}:fate:{case_id}")
        m = self.mix
        return Fate(cancel=r.random() < m.cancel, self_handle=r.random() < m.self_handle,
                    rework=r.random() < m.rework, postpone=r.random() < m.postpone,
                    suspend=r.random() < m.suspend, misdispatch=r.random() < m.misdispatch,
                    overdue=r.random() < m.overdue, supervise=r.random() < m.supervise)

    def next_move(self, case: Mapping[str, Any]) -> Move | None:
        """The next action of an open case and when it is due; None for a closed case."""
        status = case.get("status")
        if status not in OPEN_STATUSES:
            return None
        case_id = case["id"]
        base = parse_time(case.get("updated_at")) or parse_time(case.get("created_at"))
        if base is None:
            raise ValueError(f"case {case_id} has no updated_at")
        fate = self.fate(case_id)
        r = random.Random(f"{self.seed}:{case_id}:{case.get('version', case.get('updated_at'))}:{status}")

        def after(low: float, high: float) -> datetime:
            return base + timedelta(minutes=r.uniform(low, high))

        grid = case.get("grid_code")
        pending = case.get("pending")
        if pending in ("return", "postpone", "suspend"):
            decision = "reject" if r.random() < self.mix.reject_application else "approve"
            note = "同意。" if decision == "approve" else "不同意，请继续处置。"
            return Move(after(10, 60), f"{decision}_{pending}", self._actor("dispatcher"), {"note": note})
        if status == "reported":
            source = case.get("source")
            if fate.cancel and source not in ("public", "hotline"):
                return Move(after(5, 20), "cancel", self._actor("supervisor"),
                            {"note": r.choice(names.CANCEL_NOTES)})
            if source in ("public", "hotline"):
                payload = {"inspector": self.city.duty_inspector(grid)} if grid else {}
                return Move(after(3, 14), "send_verify", self._actor("operator", r), payload)
            return Move(after(2, 12), "accept_report", self._actor("operator", r), {})
        if status == "verifying":
            result = "not_found" if fate.cancel else "confirmed"
            late = r.random() < 0.05
            return Move(after(32, 70) if late else after(8, 28), "verify", self._inspector(grid),
                        {"result": result, "note": "现场核实属实。" if result == "confirmed" else "现场未发现该问题。"})
        if status == "to_register":
            if fate.cancel:
                return Move(after(3, 14), "cancel", self._actor("supervisor"), {"note": r.choice(names.CANCEL_NOTES)})
            if fate.self_handle and case.get("source") == "inspector":
                return Move(after(1, 6), "self_handle", self._inspector(grid),
                            {"note": r.choice(names.SELF_HANDLE_NOTES)})
            return Move(after(2, 14), "register", self._actor("supervisor"), {})
        if status == "registered":
            payload: dict[str, Any] = {}
            suggested = case.get("suggested_department_id")
            others = sorted(self._known_departments - {suggested})
            if fate.misdispatch and not case.get("return_count") and others:
                payload["department_id"] = r.choice(others)
            return Move(after(2, 14), "dispatch", self._actor("dispatcher"), payload)
        if status == "dispatched":
            department = self._department(case)
            suggested = case.get("suggested_department_id")
            if suggested is not None and case.get("department_id") != suggested and not case.get("return_count"):
                return Move(after(10, 45), "return", department, {"reason": r.choice(names.RETURN_REASONS)})
            return Move(after(5, 40), "accept", department, {})
        if status == "handling":
            return self._handling_move(case, fate, r, base, after)
        if status == "checking":
            passed = not (fate.rework and not case.get("rework_count"))
            payload = {"passed": True, "note": "现场核查已整改。"} if passed else \
                {"passed": False, "reason": r.choice(names.REWORK_REASONS)}
            return Move(after(10, 50), "check", self._inspector(grid), payload)
        if status == "to_close":
            return Move(after(3, 25), "close", self._actor("supervisor"), {})
        if status == "suspended":
            return Move(after(6 * 60, 30 * 60), "resume", self._actor("dispatcher"), {"note": "恢复处置。"})
        return None

    def _handling_move(self, case: Mapping[str, Any], fate: Fate, r: random.Random, base: datetime,
                       after: Any) -> Move:
        department = self._department(case)
        deadline = parse_time(case.get("bundle_deadline_at")) or parse_time(case.get("deadline_at"))
        window = (deadline - base).total_seconds() / 60 if deadline is not None else 240.0
        dispatched = parse_time(case.get("dispatched_at"))
        fresh = dispatched is not None and base - dispatched < timedelta(hours=3)
        if fate.suspend and fresh and not case.get("postpone_count"):
            return Move(after(20, 90), "suspend", department, {"reason": r.choice(names.SUSPEND_REASONS)})
        if fate.postpone and not case.get("postpone_count") and window > 30:
            return Move(after(10, min(180.0, window * 0.5)), "postpone", department,
                        {"reason": r.choice(names.POSTPONE_REASONS), "hours": float(r.choice((4, 8, 16, 24)))})
        if fate.supervise and not case.get("supervise_count") and window > 30:
            return Move(after(window * 0.2, window * 0.5), "supervise", self._actor("leader"),
                        {"note": r.choice(names.SUPERVISE_NOTES), "level": r.choice((1, 2))})
        note = names.feedback_note(self._dept_type_by_name.get(case.get("department_name") or ""), r)
        if fate.overdue and deadline is not None and window > 0:
            if not case.get("supervise_count") and r.random() < 0.5:
                return Move(deadline + timedelta(minutes=r.uniform(10, 90)), "supervise", self._actor("leader"),
                            {"note": r.choice(names.SUPERVISE_NOTES), "level": 2})
            late = max(30.0, window * r.uniform(0.1, 0.8))
            return Move(deadline + timedelta(minutes=late), "feedback", department, {"note": note})
        if window <= 10:  # already late (e.g. urged on after the deadline): handle soon
            return Move(after(20, 240), "feedback", department, {"note": note})
        span = min(window, 3 * 24 * 60)
        return Move(after(max(5.0, span * 0.15), span * 0.9), "feedback", department, {"note": note})

    # --- actors -----------------------------------------------------------------------------------
    def _actor(self, role: str, r: random.Random | None = None) -> Actor:
        if role == "operator":
            return Actor((r or self._rng).choice(self._operators), "operator")
        username = {"supervisor": self._supervisor, "dispatcher": self._dispatcher,
                    "leader": self._leader}[role]
        return Actor(username, role)

    def _inspector(self, grid_code: str | None) -> Actor:
        try:
            return Actor(self.city.duty_inspector(grid_code or ""), "inspector")
        except ValueError:
            return Actor("insp001", "inspector")

    def _department(self, case: Mapping[str, Any]) -> Actor:
        department_id = case.get("department_id")
        name = case.get("department_name") or ""
        username = self._dept_user_by_name.get(name, f"dept_{department_id}")
        return Actor(username, "department", department_id=department_id)

    # --- bookkeeping ------------------------------------------------------------------------------
    def _remember(self, case: Mapping[str, Any]) -> None:
        for key in ("suggested_department_id", "department_id"):
            value = case.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                self._known_departments.add(value)

    def _apply(self, case: Mapping[str, Any], move: Move, at: datetime) -> dict | None:
        key = (case["id"], case.get("version", case.get("updated_at")), move.action)
        if key in self._failed:
            return None
        try:
            return self.service.apply(case["id"], move.action, move.actor, move.payload, at=at)
        except _ERRORS as exc:
            self._failed.add(key)
            log.warning("flow: %s on case %s refused: %s", move.action, case["id"], exc)
            return None
