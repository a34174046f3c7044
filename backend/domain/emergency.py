"""Emergency command (应急指挥): incidents (突发事件), their levels and states, plans (预案) and task deadlines.

Pure rules, no I/O other than loading the shipped plan file:

- Incident types (事件类型) such as 爆管, 路面塌陷, 内涝, 燃气泄漏, 大面积停电, and the 突发事件 classes of the
  catalog (E04xx) they come from.
- Levels (事件分级) I 特别重大, II 重大, III 较大, IV 一般.
- The incident state machine: ``raised`` 已接报 → ``active`` 响应中 (a plan is activated) → ``closed`` 已结束;
  ``raised`` → ``cancelled`` 已撤销.
- The affected area (影响范围): a radius around the location or a GeoJSON polygon, as one perimeter polygon.
- Plans (应急预案) as data, per type and level: steps, departments to notify (by department type), tasks
  with their time limits, kinds and numbers of units to send; validated on load.
- Task deadlines (任务时限) through the working-hours clock (``domain.clock``), with the 80% warning like a
  case stage.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from shapely.geometry import Point, Polygon, mapping, shape

from backend.domain.clock import CLOCK_TYPES, WorkCalendar, sla_state

PLANS_FILE = Path(__file__).resolve().parent.parent / "data" / "plans.json"

LEVELS: dict[str, str] = {"I": "特别重大", "II": "重大", "III": "较大", "IV": "一般"}
"""Levels of a 突发事件, most severe first."""

INCIDENT_TYPES: dict[str, str] = {
    "water_main_burst": "爆管",
    "road_collapse": "路面塌陷",
    "flooding": "内涝",
    "gas_leak": "燃气泄漏",
    "power_outage": "大面积停电",
    "heating_pipe_burst": "热力管道破裂",
    "snow_ice": "道路冰雪",
    "crowd": "群体性事件",
    "other": "其他突发事件",
}

CLASS_TYPES: dict[str, str] = {
    "E0401": "road_collapse",       # 路面塌陷
    "E0402": "water_main_burst",    # 自来水管破裂
    "E0403": "gas_leak",            # 燃气管道破裂
    "E0404": "flooding",            # 下水道堵塞或破损
    "E0405": "heating_pipe_burst",  # 热力管道破裂
    "E0406": "flooding",            # 道路积水
    "E0407": "snow_ice",            # 道路积雪结冰
    "E0408": "power_outage",        # 架空线缆损坏
    "E0409": "crowd",               # 群发性事件
    "E0499": "other",               # 其他突发事件
}
"""The 突发事件 classes (大类 04 of 事件) and the incident type each one raises."""

STATUSES: dict[str, str] = {"raised": "已接报", "active": "响应中", "closed": "已结束", "cancelled": "已撤销"}
FINAL_STATUSES = frozenset({"closed", "cancelled"})

TRANSITIONS: dict[str, dict[str, str]] = {
    "activate": {"raised": "active"},
    "close": {"active": "closed"},
    "cancel": {"raised": "cancelled"},
}
"""Status changes: action → {from status: to status}."""

OPEN_ACTIONS = frozenset({"report", "order", "set_level", "wall_mode", "conference"})
"""Actions that keep the status and are allowed while the incident is open (raised or active)."""

ACTION_ZH: dict[str, str] = {
    "raised": "接报", "activated": "启动预案", "closed": "结束响应", "cancelled": "撤销", "report": "现场报告",
    "order": "指令", "level": "调整级别", "task": "任务变更", "task_warning": "任务预警",
    "task_overdue": "任务超期", "notification": "通知", "unit": "力量调度", "mode": "大屏模式",
    "conference_join": "入会", "conference_leave": "离会", "report_ready": "总结报告",
}

TASK_STATUSES: dict[str, str] = {"pending": "待处理", "in_progress": "处置中", "done": "已完成",
                                 "cancelled": "已取消"}
TASK_FINAL = frozenset({"done", "cancelled"})
TASK_MOVES: dict[str, frozenset[str]] = {
    "pending": frozenset({"in_progress", "done", "cancelled"}),
    "in_progress": frozenset({"done", "cancelled"}),
    "done": frozenset(),
    "cancelled": frozenset(),
}
WARN_SHARE = 0.8
MAX_RADIUS_M = 20_000.0
CIRCLE_SEGMENTS = 48
EARTH_M_PER_DEG = 111_320.0


class EmergencyError(ValueError):
    """Bad incident input: unknown type or level, a malformed area."""


class TransitionNotAllowed(EmergencyError):
    """The action is not allowed in the incident's present status."""

    def __init__(self, action: str, status: str):
        allowed = sorted(a for a, moves in TRANSITIONS.items() if status in moves)
        if status not in FINAL_STATUSES:
            allowed += sorted(OPEN_ACTIONS)
        super().__init__(f"'{action}' is not allowed on an incident that is {status} ({STATUSES.get(status, '')})")
        self.action = action
        self.status = status
        self.allowed = allowed


class PlanError(ValueError):
    """A plan file that cannot be used; the message names the plan and the field."""


# --- types, levels, states ----------------------------------------------------------------------

def check_type(value: Any) -> str:
    if value not in INCIDENT_TYPES:
        raise EmergencyError(f"unknown incident type {value!r}; one of: {', '.join(INCIDENT_TYPES)}")
    return value


def check_level(value: Any) -> str:
    if value not in LEVELS:
        raise EmergencyError(f"unknown level {value!r}; one of: I 特别重大, II 重大, III 较大, IV 一般")
    return value


def type_for_class(class_code: str) -> str:
    """The incident type of a 突发事件 class (E04xx); other classes cannot raise an incident."""
    if not isinstance(class_code, str) or not class_code.startswith("E04"):
        raise EmergencyError(f"class {class_code!r} is not a 突发事件 class (E04xx)")
    return CLASS_TYPES.get(class_code, "other")


def next_status(status: str, action: str) -> str:
    """The status after `action`; raises TransitionNotAllowed when the status does not allow it."""
    if action in OPEN_ACTIONS:
        if status in FINAL_STATUSES:
            raise TransitionNotAllowed(action, status)
        return status
    moves = TRANSITIONS.get(action)
    if moves is None:
        raise EmergencyError(f"unknown incident action {action!r}")
    if status not in moves:
        raise TransitionNotAllowed(action, status)
    return moves[status]


def check_task_move(current_status: str, new_status: str) -> None:
    if new_status not in TASK_STATUSES:
        raise EmergencyError(f"unknown task status {new_status!r}; one of: {', '.join(TASK_STATUSES)}")
    if new_status not in TASK_MOVES.get(current_status, frozenset()):
        raise TransitionNotAllowed(f"task → {new_status}", current_status)


# --- the affected area --------------------------------------------------------------------------

@dataclass(frozen=True)
class Area:
    """影响范围: the perimeter polygon (GeoJSON, WGS-84) and how it was given."""

    kind: str  # "radius" | "polygon"
    radius_m: float | None
    geometry: dict

    def to_dict(self) -> dict:
        return {"kind": self.kind, "radius_m": self.radius_m, "geometry": self.geometry}

    @property
    def reach_m(self) -> float:
        """The largest distance from the perimeter's centre to its edge (metres), for nearby searches."""
        if self.radius_m is not None:
            return self.radius_m
        poly = shape(self.geometry)
        c = poly.centroid
        return max(distance_m(c.y, c.x, y, x) for x, y in poly.exterior.coords)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(min(1.0, a)))


def circle(lat: float, lon: float, radius_m: float, segments: int = CIRCLE_SEGMENTS) -> dict:
    """A GeoJSON polygon approximating a circle of `radius_m` around (lat, lon)."""
    dlat = radius_m / EARTH_M_PER_DEG
    dlon = radius_m / (EARTH_M_PER_DEG * max(math.cos(math.radians(lat)), 1e-6))
    ring = [[round(lon + dlon * math.cos(2 * math.pi * k / segments), 7),
             round(lat + dlat * math.sin(2 * math.pi * k / segments), 7)] for k in range(segments)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def parse_area(area: Any, lat: float, lon: float, default_radius_m: float = 200.0) -> Area:
    """The affected area from input: ``{"radius_m": 300}`` or a GeoJSON Polygon (or a Feature of one).

    None gives a circle of `default_radius_m`. A polygon must be valid and lie within 20 km of the location.
    """
    if area is None:
        area = {"radius_m": default_radius_m}
    if not isinstance(area, dict):
        raise EmergencyError("'area' must be an object: {\"radius_m\": 300} or a GeoJSON Polygon")
    if area.get("type") == "Feature":
        area = area.get("geometry")
        if not isinstance(area, dict):
            raise EmergencyError("'area' is a Feature without a geometry")
    if "radius_m" in area and area.get("type") is None:
        r = area["radius_m"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) \
                or not 0 < r <= MAX_RADIUS_M:
            raise EmergencyError(f"'area.radius_m' must be a number of metres in (0, {MAX_RADIUS_M:g}]")
        return Area("radius", float(r), circle(lat, lon, float(r)))
    if area.get("type") != "Polygon":
        raise EmergencyError("'area' must be {\"radius_m\": <metres>} or a GeoJSON Polygon")
    coords = area.get("coordinates")
    try:
        ring = [(float(x), float(y)) for x, y in coords[0]]
        poly = Polygon(ring)
    except (TypeError, ValueError, IndexError) as exc:
        raise EmergencyError("'area.coordinates' must be [[[lon, lat], …]] with at least 4 positions") from exc
    if len(ring) < 4 or not all(math.isfinite(v) for p in ring for v in p):
        raise EmergencyError("'area' polygon needs at least 4 finite positions (closed ring)")
    if not poly.is_valid or poly.area <= 0:
        raise EmergencyError("'area' polygon is not valid (self-intersecting or empty)")
    c = poly.centroid
    if distance_m(lat, lon, c.y, c.x) > MAX_RADIUS_M:
        raise EmergencyError("'area' polygon lies more than 20 km from the incident's location")
    return Area("polygon", None, mapping(poly) | {"coordinates": [[list(p) for p in poly.exterior.coords]]})


def contains(area_geometry: dict, lat: float, lon: float) -> bool:
    return shape(area_geometry).contains(Point(lon, lat))


# --- plans --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """A task of a plan (预案任务): what, which department type, and its time limit on a clock."""

    code: str
    title: str
    dept_type: str
    limit_value: float
    clock: str


@dataclass(frozen=True)
class UnitSpec:
    """Units to send (调派力量): a unit type (vehicle type of the GPS registry, or ``person``) and how many."""

    unit_type: str
    count: int


@dataclass(frozen=True)
class Plan:
    """应急预案 for one incident type at one level."""

    key: str
    type: str
    level: str
    name: str
    lead_dept_type: str
    steps: tuple[str, ...]
    notify: tuple[str, ...]
    tasks: tuple[TaskSpec, ...]
    units: tuple[UnitSpec, ...]
    message: str = ""

    def to_dict(self) -> dict:
        return {"key": self.key, "type": self.type, "type_zh": INCIDENT_TYPES[self.type], "level": self.level,
                "level_zh": LEVELS[self.level], "name": self.name, "lead_dept_type": self.lead_dept_type,
                "steps": list(self.steps), "notify": list(self.notify), "message": self.message,
                "tasks": [{"code": t.code, "title": t.title, "dept_type": t.dept_type,
                           "limit": {"value": t.limit_value, "clock": t.clock}} for t in self.tasks],
                "units": [{"type": u.unit_type, "count": u.count} for u in self.units]}


@dataclass
class PlanBook:
    """Every plan, keyed by (type, level)."""

    plans: dict[tuple[str, str], Plan] = field(default_factory=dict)

    def get(self, type_: str, level: str) -> Plan:
        plan = self.plans.get((type_, level))
        if plan is None:
            raise EmergencyError(f"no plan for {INCIDENT_TYPES.get(type_, type_)} at level {level}")
        return plan

    def by_key(self, key: str) -> Plan:
        for plan in self.plans.values():
            if plan.key == key:
                return plan
        raise EmergencyError(f"no plan with key {key!r}")

    def __iter__(self):
        return iter(sorted(self.plans.values(), key=lambda p: (p.type, list(LEVELS).index(p.level))))

    def __len__(self) -> int:
        return len(self.plans)

    @classmethod
    def from_dict(cls, data: Any, dept_types: Iterable[str] | None = None,
                  unit_types: Iterable[str] | None = None) -> "PlanBook":
        """Validate plan data. `dept_types` / `unit_types`, when given, are the only allowed values."""
        if not isinstance(data, dict) or not isinstance(data.get("plans"), list):
            raise PlanError("the plan file must be an object with a list 'plans'")
        depts = set(dept_types) if dept_types is not None else None
        units = set(unit_types) if unit_types is not None else None
        book = cls()
        keys: set[str] = set()
        for i, raw in enumerate(data["plans"]):
            plan = _plan(raw, i, depts, units)
            if plan.key in keys:
                raise PlanError(f"plans[{i}]: key {plan.key!r} is used twice")
            if (plan.type, plan.level) in book.plans:
                raise PlanError(f"plans[{i}]: a second plan for {plan.type} level {plan.level}")
            keys.add(plan.key)
            book.plans[(plan.type, plan.level)] = plan
        return book

    @classmethod
    def load(cls, path: str | Path = PLANS_FILE, dept_types: Iterable[str] | None = None,
             unit_types: Iterable[str] | None = None) -> "PlanBook":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PlanError(f"cannot read plan file {path}: {exc}") from exc
        return cls.from_dict(data, dept_types, unit_types)


def _text(raw: dict, name: str, where: str, limit: int = 200) -> str:
    v = raw.get(name)
    if not isinstance(v, str) or not v.strip() or len(v) > limit:
        raise PlanError(f"{where}: '{name}' must be a non-empty string of at most {limit} characters")
    return v.strip()


def _dept(value: Any, where: str, depts: set[str] | None) -> str:
    if not isinstance(value, str) or not value or (depts is not None and value not in depts):
        raise PlanError(f"{where}: unknown department type {value!r}")
    return value


def _plan(raw: Any, i: int, depts: set[str] | None, units: set[str] | None) -> Plan:
    where = f"plans[{i}]"
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: must be an object")
    key = _text(raw, "key", where, 60)
    where = f"plan {key!r}"
    type_ = raw.get("type")
    if type_ not in INCIDENT_TYPES:
        raise PlanError(f"{where}: unknown type {type_!r}")
    level = raw.get("level")
    if level not in LEVELS:
        raise PlanError(f"{where}: unknown level {level!r}")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        raise PlanError(f"{where}: 'steps' must be a non-empty list of strings")
    notify = raw.get("notify")
    if not isinstance(notify, list) or not notify:
        raise PlanError(f"{where}: 'notify' must be a non-empty list of department types")
    notify_t = tuple(dict.fromkeys(_dept(d, where + " notify", depts) for d in notify))
    lead = _dept(raw.get("lead_dept_type"), where + " lead_dept_type", depts)
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise PlanError(f"{where}: 'tasks' must be a non-empty list")
    tasks = []
    codes: set[str] = set()
    for j, t in enumerate(tasks_raw):
        tw = f"{where} tasks[{j}]"
        if not isinstance(t, dict):
            raise PlanError(f"{tw}: must be an object")
        code = _text(t, "code", tw, 40)
        if code in codes:
            raise PlanError(f"{tw}: code {code!r} is used twice")
        codes.add(code)
        limit = t.get("limit")
        if not isinstance(limit, dict):
            raise PlanError(f"{tw}: 'limit' must be {{\"value\": <number>, \"clock\": <clock type>}}")
        value, clock = limit.get("value"), limit.get("clock")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value <= 0:
            raise PlanError(f"{tw}: 'limit.value' must be a positive number")
        if clock not in CLOCK_TYPES:
            raise PlanError(f"{tw}: 'limit.clock' must be one of {', '.join(sorted(CLOCK_TYPES))}")
        tasks.append(TaskSpec(code, _text(t, "title", tw), _dept(t.get("dept_type"), tw, depts),
                              float(value), clock))
    units_raw = raw.get("units", [])
    if not isinstance(units_raw, list):
        raise PlanError(f"{where}: 'units' must be a list")
    unit_specs = []
    for j, u in enumerate(units_raw):
        uw = f"{where} units[{j}]"
        if not isinstance(u, dict):
            raise PlanError(f"{uw}: must be an object")
        ut, count = u.get("type"), u.get("count")
        if not isinstance(ut, str) or not ut or (units is not None and ut not in units):
            raise PlanError(f"{uw}: unknown unit type {ut!r}")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 50:
            raise PlanError(f"{uw}: 'count' must be an integer from 1 to 50")
        unit_specs.append(UnitSpec(ut, count))
    message = raw.get("message", "")
    if not isinstance(message, str) or len(message) > 300:
        raise PlanError(f"{where}: 'message' must be a string of at most 300 characters")
    return Plan(key=key, type=type_, level=level, name=_text(raw, "name", where), lead_dept_type=lead,
                steps=tuple(s.strip() for s in steps), notify=notify_t, tasks=tuple(tasks),
                units=tuple(unit_specs), message=message)


def notification_text(plan: Plan, title: str, level: str, address: str, dept_name: str) -> str:
    """The 业务短信 text for one department: what happened, where, the level and what to do."""
    where = address or "现场"
    base = f"【应急指挥】{title}（{INCIDENT_TYPES[plan.type]}，{level}级{LEVELS[level]}），地点：{where}。"
    ask = plan.message or "请立即按预案响应。"
    return f"{base}{dept_name}：{ask}"


# --- task deadlines -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskClock:
    deadline_at: datetime
    warn_at: datetime


def task_clock(calendar: WorkCalendar, start: datetime, spec: TaskSpec) -> TaskClock:
    """The deadline and 80% warning time of a task started at `start` (aware datetimes, UTC out)."""
    seconds = spec.limit_value * calendar.unit_seconds(spec.clock)
    return TaskClock(deadline_at=calendar.add_seconds(start, seconds, spec.clock),
                     warn_at=calendar.add_seconds(start, seconds * WARN_SHARE, spec.clock))


task_sla_state = sla_state  # a task's countdown works like a case stage's (domain.clock)
