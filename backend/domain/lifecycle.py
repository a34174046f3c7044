"""The case lifecycle (案件流程): states, roles, actions and the decider.

A case (案件) moves through the seven links of 数字化城管: 信息收集 → 立案 → 派遣 →
处置 → 处理反馈 → 核查 → 结案, with the branches 作废, 回退, 返工, 延期, 挂账/缓办,
督办 and 自行处置 (reference §2).

Terminology: 核实 (``verify``) happens BEFORE 立案 — an inspector confirms a public or
hotline report on site. 核查 (``check``) happens AFTER 处置 — an inspector confirms
the fix before 结案.

This module is pure. :func:`decide` says whether an actor may take an action on a case
in its present state, validates and normalises the payload, and returns a
:class:`Decision`: the new status, the case fields to set (``changes``) and named
``effects`` for the service layer (which computes deadlines with ``domain.clock`` and
the ``domain.catalog`` limits; this module never computes a deadline).

Effects (strings in ``Decision.effects``):

- ``start_stage:<stage>`` — a stage's SLA clock starts; the service computes its deadline.
- ``stop_stage:<stage>`` — the stage is finished; the service records its end time.
- ``start_bundle`` — start the bundle deadline (捆绑时限) = now + the 处置 limit
  (on 派遣 and on 返工, which gets a fresh limit).
- ``clear_bundle`` — the bundle deadline no longer applies (回退 back to 待派遣).
- ``extend_bundle`` — move the bundle deadline by ``payload["hours"]`` working hours;
  ``None`` means "+1 × the original 处置 limit" (the service looks it up).
- ``start_supervision`` — automatic 督办 monitoring starts (at 派遣).
- ``suggest_department`` — the dispatch named no department: the service fills in the
  suggested one (``domain.grid`` responsibilities) and sets ``department_id``.
- ``record_disposed`` — record ``disposed_at`` (处理反馈 ends 处置).
- ``pause_clock`` / ``resume_clock`` — 挂账/缓办 stops the clock (record suspended_at);
  恢复 restarts it and the service moves the deadlines by the paused time.
- ``set_close_type`` — 结案 without an explicit type: the service sets ``normal`` or
  ``overtime`` from the bundle deadline.

``Decision.changes`` never contains ``status`` (set it from ``Decision.to_status``).
Its keys are case fields: ``department_id``, ``pending``, ``pending_payload``,
``postpone_count``, ``rework_count``, ``return_count``, ``supervise_count``,
``urgency``, ``close_type``, ``suspended_until``.

A pending application (申请回退/延期/挂账) does not change the status: the case keeps
its status and carries ``pending`` plus the application's normalised payload in
``pending_payload``. Rejecting the application therefore returns the case to the very
state it was in.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# --------------------------------------------------------------------------- roles

INSPECTOR = "inspector"
OPERATOR = "operator"
SUPERVISOR = "supervisor"
DISPATCHER = "dispatcher"
DEPARTMENT = "department"
LEADER = "leader"
ADMIN = "admin"
SYSTEM = "system"
PUBLIC = "public"

ROLES: dict[str, str] = {
    INSPECTOR: "监督员",
    OPERATOR: "受理员",
    SUPERVISOR: "值班长",
    DISPATCHER: "派遣员",
    DEPARTMENT: "专业部门",
    LEADER: "领导",
    ADMIN: "系统管理员",
    SYSTEM: "系统",
    PUBLIC: "公众",
}


@dataclass(frozen=True)
class Actor:
    """Who acts (操作人): a user name, a role and, for a 专业部门 user, the department."""

    username: str
    role: str
    department_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.username, str) or not self.username.strip():
            raise ValueError("actor username must be a non-empty string")
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; known roles: {', '.join(ROLES)}")
        if self.department_id is not None and not _is_int(self.department_id):
            raise ValueError("actor department_id must be an integer or None")
        if self.role == DEPARTMENT and self.department_id is None:
            raise ValueError("a department actor needs a department_id")


# -------------------------------------------------------------------------- states

REPORTED = "reported"
VERIFYING = "verifying"
TO_REGISTER = "to_register"
REGISTERED = "registered"
DISPATCHED = "dispatched"
HANDLING = "handling"
CHECKING = "checking"
TO_CLOSE = "to_close"
CLOSED = "closed"
CANCELLED = "cancelled"
SUSPENDED = "suspended"

STATUSES: dict[str, str] = {
    REPORTED: "待受理",
    VERIFYING: "待核实",
    TO_REGISTER: "待立案",
    REGISTERED: "待派遣",
    DISPATCHED: "待签收",
    HANDLING: "处置中",
    CHECKING: "待核查",
    TO_CLOSE: "待结案",
    CLOSED: "已结案",
    CANCELLED: "已作废",
    SUSPENDED: "挂账/缓办",
}

FINAL_STATUSES: frozenset[str] = frozenset({CLOSED, CANCELLED})
OPEN_STATUSES: frozenset[str] = frozenset(STATUSES) - FINAL_STATUSES

# The SLA stage whose clock runs in each open state (None: the clock is stopped).
# Stage ids are the catalog's: accept 受理, verify 核实, register 立案, dispatch 派遣,
# dispose 处置, check 核查, close 结案.
STAGE_OF_STATUS: dict[str, str | None] = {
    REPORTED: "accept",
    VERIFYING: "verify",
    TO_REGISTER: "register",
    REGISTERED: "dispatch",
    DISPATCHED: "dispose",
    HANDLING: "dispose",
    CHECKING: "check",
    TO_CLOSE: "close",
    SUSPENDED: None,
}

# Pending applications (待审批的申请).
PENDING_KINDS: dict[str, str] = {"return": "回退", "postpone": "延期", "suspend": "挂账/缓办"}

MAX_POSTPONES = 2
MAX_POSTPONE_HOURS = 720.0
MAX_TEXT = 2000
MAX_PHOTOS = 20

CLOSE_TYPES: dict[str, str] = {
    "normal": "正常结案",
    "overtime": "超时结案",
    "error": "差错结案",
    "special": "特殊结案",
    "self": "自行处置",
}
# Types a supervisor may choose at 结案 ("self" is only set by 自行处置).
CHOOSABLE_CLOSE_TYPES = ("normal", "overtime", "error", "special")

VERIFY_RESULTS: dict[str, str] = {"confirmed": "属实", "not_found": "不属实"}
URGENCIES: dict[str, str] = {"normal": "一般", "urgent": "紧急"}
SUPERVISE_LEVELS: dict[int, str] = {1: "一般督办", 2: "重点督办", 3: "挂牌督办"}


def is_open(status: str) -> bool:
    """True while the case is not 已结案 or 已作废."""
    _check_status(status)
    return status in OPEN_STATUSES


# ------------------------------------------------------------------------- sources

SOURCES: dict[str, str] = {
    "inspector": "监督员上报",
    "public": "公众举报",
    "hotline": "热线",
    "video": "视频监控",
    "superior": "上级交办",
    "sensor": "物联感知",
}

# Who may create a case from each source (admin and supervisor: any source).
_REPORTERS: dict[str, frozenset[str]] = {
    "inspector": frozenset({INSPECTOR}),
    "public": frozenset({PUBLIC, OPERATOR}),
    "hotline": frozenset({OPERATOR}),
    "video": frozenset({OPERATOR, SYSTEM}),
    "superior": frozenset({OPERATOR, LEADER}),
    "sensor": frozenset({OPERATOR, SYSTEM}),
}


def initial_status(source: str) -> str:
    """The status of a new case: 监督员上报 goes straight to 待立案, others to 待受理."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    return TO_REGISTER if source == "inspector" else REPORTED


def report_status(actor: Actor, source: str) -> str:
    """Check that ``actor`` may report (上报) a case from ``source``; return its first status.

    A citizen (公众) may only report as ``public``; an inspector reports as ``inspector``;
    the operator enters hotline, walk-in, video, superior and sensor reports; the SLA
    worker (系统) creates video and sensor cases.
    """
    status = initial_status(source)
    if actor.role in (ADMIN, SUPERVISOR) or actor.role in _REPORTERS[source]:
        return status
    raise Forbidden(
        f"a {actor.role} ({ROLES[actor.role]}) may not report a case from source "
        f"{source!r} ({SOURCES[source]})"
    )


# -------------------------------------------------------------------------- errors


class LifecycleError(Exception):
    """Base of the lifecycle errors; ``code``, ``message``, ``details`` and ``http_status``."""

    code = "lifecycle_error"
    http_status = 400

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class UnknownAction(LifecycleError):
    """The action name is not one of :data:`ACTIONS` (HTTP 404)."""

    code = "unknown_action"
    http_status = 404

    def __init__(self, action: object) -> None:
        self.actions = list(ACTIONS)
        super().__init__(
            f"unknown action {action!r}; known actions: {', '.join(self.actions)}",
            {"actions": self.actions},
        )


class Forbidden(LifecycleError):
    """The actor's role, or its department, may not take this action (HTTP 403)."""

    code = "forbidden"
    http_status = 403


class ActionNotAllowed(LifecycleError):
    """The action does not fit the case's state or pending application (HTTP 409).

    ``allowed`` lists the actions this actor could take now.
    """

    code = "not_allowed"
    http_status = 409

    def __init__(self, reason: str, allowed: list[str]) -> None:
        self.allowed = allowed
        now = ", ".join(allowed) if allowed else "none"
        super().__init__(f"{reason}; allowed now: {now}", {"allowed": allowed})


class InvalidPayload(LifecycleError):
    """The payload is malformed (HTTP 400); ``details`` maps each bad field to a message."""

    code = "invalid_payload"
    http_status = 400

    def __init__(self, action: str, details: dict[str, str]) -> None:
        listed = "; ".join(f"{name}: {text}" for name, text in details.items())
        super().__init__(f"invalid payload for {action}: {listed}", details)


# ------------------------------------------------------------------------ the case


@dataclass(frozen=True)
class CaseView:
    """What the decider needs to know about a case (案件)."""

    status: str
    department_id: int | None = None
    pending: str | None = None
    pending_payload: Mapping[str, Any] | None = field(default=None, hash=False)
    postpone_count: int = 0
    rework_count: int = 0
    return_count: int = 0
    supervise_count: int = 0

    def __post_init__(self) -> None:
        _check_status(self.status)
        if self.department_id is not None and not _is_int(self.department_id):
            raise ValueError("case department_id must be an integer or None")
        if self.pending is not None and self.pending not in PENDING_KINDS:
            raise ValueError(
                f"unknown pending application {self.pending!r}; "
                f"known: {', '.join(PENDING_KINDS)}"
            )
        if self.pending_payload is not None and not isinstance(self.pending_payload, Mapping):
            raise ValueError("case pending_payload must be a mapping or None")
        for name in ("postpone_count", "rework_count", "return_count", "supervise_count"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"case {name} must be a non-negative integer, got {value!r}")

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | object) -> CaseView:
        """Build a view from a mapping or an object with these attributes (extras ignored).

        ``None`` counts are read as 0.
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if isinstance(record, Mapping):
                present = f.name in record
                value = record.get(f.name)
            else:
                present = hasattr(record, f.name)
                value = getattr(record, f.name, None)
            if not present:
                continue
            if f.name.endswith("_count") and value is None:
                value = 0
            values[f.name] = value
        if "status" not in values:
            raise ValueError("a case record needs a status")
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    """The outcome of an allowed action, for the service layer to apply."""

    action: str
    from_status: str
    to_status: str
    changes: dict[str, Any]
    effects: tuple[str, ...]
    payload: dict[str, Any]


class PublicStatus(NamedTuple):
    """The public view of a status (Open311 ``status`` plus a short Chinese label)."""

    status: str  # "open" | "closed" (Open311 GeoReport v2)
    label: str  # 公众可见的状态
    extended: str  # a FixMyStreet-style extended status


_PUBLIC: dict[str, PublicStatus] = {
    REPORTED: PublicStatus("open", "已接收", "open"),
    VERIFYING: PublicStatus("open", "核实中", "investigating"),
    TO_REGISTER: PublicStatus("open", "核实中", "investigating"),
    REGISTERED: PublicStatus("open", "处理中", "in_progress"),
    DISPATCHED: PublicStatus("open", "处理中", "in_progress"),
    HANDLING: PublicStatus("open", "处理中", "in_progress"),
    CHECKING: PublicStatus("open", "处理中", "in_progress"),
    TO_CLOSE: PublicStatus("open", "处理中", "in_progress"),
    SUSPENDED: PublicStatus("open", "暂缓处理", "action_scheduled"),
    CLOSED: PublicStatus("closed", "已办结", "closed"),
    CANCELLED: PublicStatus("closed", "不予受理", "no_further_action"),
}


def public_status(status: str) -> PublicStatus:
    """Map an internal status onto the few public ones (Open311 open/closed)."""
    _check_status(status)
    return _PUBLIC[status]


# ------------------------------------------------------------------------- payload


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise ValueError(f"must be at most {MAX_TEXT} characters")
    return value.strip()


def _photos(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("must be a list of strings")
    if len(value) > MAX_PHOTOS:
        raise ValueError(f"must hold at most {MAX_PHOTOS} photos")
    photos = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError("must be a list of non-empty strings")
        photos.append(item.strip())
    return photos


def _choice(options: Mapping[Any, str]) -> Callable[[object], Any]:
    kinds = {type(option) for option in options}

    def check(value: object) -> Any:
        if type(value) not in kinds or value not in options:
            raise ValueError(f"must be one of {', '.join(map(str, options))}")
        return value

    return check


def _department_id(value: object) -> int:
    if not _is_int(value) or value <= 0:  # type: ignore[operator]
        raise ValueError("must be a positive integer")
    return value  # type: ignore[return-value]


def _hours(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number of working hours")
    hours = float(value)
    if not 0 < hours <= MAX_POSTPONE_HOURS:  # also refuses NaN
        raise ValueError(f"must be > 0 and <= {MAX_POSTPONE_HOURS:g}")
    return hours


def _iso_date(value: object) -> str:
    if isinstance(value, datetime.datetime):
        raise ValueError("must be a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError("must be an ISO date string YYYY-MM-DD")
    try:
        if len(value) != 10:
            raise ValueError
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"must be an ISO date YYYY-MM-DD, got {value!r}") from None


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


FIELDS: dict[str, Callable[[object], Any]] = {
    "note": _text,
    "reason": _text,
    "inspector": _text,
    "photos": _photos,
    "result": _choice(VERIFY_RESULTS),
    "urgency": _choice(URGENCIES),
    "department_id": _department_id,
    "hours": _hours,
    "until": _iso_date,
    "passed": _bool,
    "close_type": _choice({k: CLOSE_TYPES[k] for k in CHOOSABLE_CLOSE_TYPES}),
    "level": _choice(SUPERVISE_LEVELS),
}


# ------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class ActionSpec:
    """An action (操作) on a case: who may take it, from which states, with what payload.

    ``needs_pending``: the action decides that pending application (审批).
    ``blocked_by_pending``: refused while any application is pending.
    """

    name: str
    zh: str
    roles: frozenset[str]
    from_states: frozenset[str]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    doc: str
    needs_pending: str | None = None
    blocked_by_pending: bool = False

    @property
    def for_department(self) -> bool:
        """True when a 专业部门 takes this action (only on its own cases)."""
        return DEPARTMENT in self.roles


def _spec(
    name: str,
    zh: str,
    roles: set[str],
    states: set[str],
    doc: str,
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    needs_pending: str | None = None,
    blocked_by_pending: bool = False,
) -> ActionSpec:
    return ActionSpec(
        name, zh, frozenset(roles), frozenset(states), required, optional, doc,
        needs_pending, blocked_by_pending,
    )


_CENTRE = {DISPATCHER, SUPERVISOR}  # 派遣员 and 值班长 approve applications
_APPLIED = {DISPATCHED, HANDLING}

ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in [
        _spec("accept_report", "受理", {OPERATOR}, {REPORTED},
              "Accept a report that needs no on-site verification (上级交办, video).",
              optional=("note",)),
        _spec("send_verify", "发核实", {OPERATOR}, {REPORTED},
              "Send a report to an inspector to verify on site.",
              optional=("inspector", "note")),
        _spec("verify", "核实", {INSPECTOR}, {VERIFYING},
              "The inspector's on-site verification result (confirmed / not_found).",
              required=("result",), optional=("note", "photos")),
        _spec("register", "立案", {SUPERVISOR}, {TO_REGISTER},
              "Register the case (立案); optionally override its urgency.",
              optional=("note", "urgency")),
        _spec("cancel", "作废", {SUPERVISOR}, {REPORTED, VERIFYING, TO_REGISTER, REGISTERED},
              "Cancel a report that does not meet the 立案 conditions.",
              required=("note",)),
        _spec("dispatch", "派遣", _CENTRE, {REGISTERED},
              "Dispatch to a department; starts 处置 and the bundle deadline, and 督办 monitoring.",
              optional=("department_id", "note")),
        _spec("accept", "签收", {DEPARTMENT}, {DISPATCHED},
              "The department signs for the case.",
              optional=("note",), blocked_by_pending=True),
        _spec("feedback", "处理反馈", {DEPARTMENT}, {HANDLING},
              "The department reports the problem handled; 处置 ends and 核查 starts.",
              required=("note",), optional=("photos",), blocked_by_pending=True),
        _spec("return", "申请回退", {DEPARTMENT}, _APPLIED,
              "The department applies to return the case (not its business).",
              required=("reason",), blocked_by_pending=True),
        _spec("approve_return", "回退审批通过", _CENTRE, _APPLIED,
              "Approve the return: back to 待派遣 without a department.",
              optional=("note",), needs_pending="return"),
        _spec("reject_return", "回退驳回", _CENTRE, _APPLIED,
              "Reject the return: the department keeps the case.",
              optional=("note",), needs_pending="return"),
        _spec("postpone", "申请延期", {DEPARTMENT}, _APPLIED,
              "The department applies for more time (at most 2 approvals per case).",
              required=("reason",), optional=("hours",), blocked_by_pending=True),
        _spec("approve_postpone", "延期审批通过", _CENTRE, _APPLIED,
              "Approve the extension; the bundle deadline moves by `hours` "
              "(default: +1 × the original 处置 limit).",
              optional=("hours", "note"), needs_pending="postpone"),
        _spec("reject_postpone", "延期驳回", _CENTRE, _APPLIED,
              "Reject the extension.",
              optional=("note",), needs_pending="postpone"),
        _spec("suspend", "申请挂账", {DEPARTMENT}, {HANDLING},
              "The department applies to suspend (挂账/缓办) a case it cannot solve in time.",
              required=("reason",), optional=("until",), blocked_by_pending=True),
        _spec("approve_suspend", "挂账审批通过", _CENTRE, {HANDLING},
              "Approve the suspension: the clock stops.",
              optional=("until", "note"), needs_pending="suspend"),
        _spec("reject_suspend", "挂账驳回", _CENTRE, {HANDLING},
              "Reject the suspension.",
              optional=("note",), needs_pending="suspend"),
        _spec("resume", "恢复", _CENTRE | {SYSTEM}, {SUSPENDED},
              "Resume a suspended case: the clock restarts, deadlines move by the paused time.",
              optional=("note",)),
        _spec("check", "核查", {INSPECTOR}, {CHECKING},
              "The inspector checks the fix on site; passed → 待结案, failed → 返工.",
              optional=("passed", "reason", "note", "photos")),
        _spec("rework", "返工", {INSPECTOR, SUPERVISOR, DISPATCHER}, {CHECKING, TO_CLOSE},
              "Send the case back to the same department with a fresh 处置 limit.",
              required=("reason",), optional=("note", "photos")),
        _spec("close", "结案", {SUPERVISOR}, {TO_CLOSE},
              "Close the case; without close_type the service sets normal/overtime.",
              optional=("close_type", "note")),
        _spec("supervise", "督办", {LEADER, SUPERVISOR, SYSTEM},
              {REGISTERED, DISPATCHED, HANDLING, CHECKING, SUSPENDED},
              "Urge the case on (督办); the state does not change.",
              optional=("note", "level")),
        _spec("self_handle", "自行处置", {INSPECTOR}, {REPORTED, TO_REGISTER},
              "The inspector fixed a small problem on the spot: the case is closed.",
              required=("note",), optional=("photos",)),
    ]
}


def actions_for_state(status: str) -> list[str]:
    """The actions that can start from ``status`` (ignoring roles and pending applications)."""
    _check_status(status)
    return [name for name, spec in ACTIONS.items() if status in spec.from_states]


# ------------------------------------------------------------------------- decider


def _check_status(status: object) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; known statuses: {', '.join(STATUSES)}")


def _role_refusal(spec: ActionSpec, case: CaseView, actor: Actor) -> str | None:
    """Why the actor may never take this action on this case (403), or None."""
    if actor.role == ADMIN:
        return None
    if actor.role not in spec.roles:
        roles = ", ".join(f"{r} ({ROLES[r]})" for r in sorted(spec.roles))
        return (
            f"a {actor.role} ({ROLES[actor.role]}) may not {spec.name} ({spec.zh}); "
            f"allowed roles: {roles}"
        )
    if actor.role == DEPARTMENT and case.department_id != actor.department_id:
        return (
            f"department {actor.department_id} may not {spec.name} ({spec.zh}): the case "
            f"belongs to department {case.department_id}"
        )
    return None


def _state_refusal(spec: ActionSpec, case: CaseView) -> str | None:
    """Why the action does not fit the case's state now (409), or None."""
    status = case.status
    if status not in spec.from_states:
        return (
            f"cannot {spec.name} ({spec.zh}) a case in state {status} ({STATUSES[status]})"
        )
    if spec.needs_pending is not None and case.pending != spec.needs_pending:
        kind = spec.needs_pending
        return f"cannot {spec.name} ({spec.zh}): no {kind} ({PENDING_KINDS[kind]}) application is pending"
    if spec.blocked_by_pending and case.pending is not None:
        return (
            f"cannot {spec.name} ({spec.zh}): a {case.pending} "
            f"({PENDING_KINDS[case.pending]}) application is pending approval"
        )
    if spec.name in ("postpone", "approve_postpone") and case.postpone_count >= MAX_POSTPONES:
        return (
            f"cannot {spec.name} ({spec.zh}): the case was already postponed "
            f"{case.postpone_count} times (at most {MAX_POSTPONES} 延期 per case)"
        )
    return None


def allowed_actions(case: CaseView, actor: Actor) -> list[str]:
    """The actions ``actor`` may take on ``case`` now (for the UI and the 409 answer)."""
    return [
        name
        for name, spec in ACTIONS.items()
        if _role_refusal(spec, case, actor) is None and _state_refusal(spec, case) is None
    ]


def validate_payload(action: str, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a payload against the action's fields; return it normalised.

    Unknown fields are refused; optional fields given as ``None`` count as absent.
    Raises :class:`UnknownAction` or :class:`InvalidPayload` (naming every bad field).
    """
    spec = ACTIONS.get(action) if isinstance(action, str) else None
    if spec is None:
        raise UnknownAction(action)
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise InvalidPayload(action, {"payload": "must be an object"})
    errors: dict[str, str] = {}
    result: dict[str, Any] = {}
    known = spec.required + spec.optional
    for name in payload:
        if name not in known:
            fields = ", ".join(known) if known else "none"
            errors[str(name)] = f"unknown field (fields of {action}: {fields})"
    for name in known:
        value = payload.get(name)
        if value is None:
            if name in spec.required:
                errors[name] = "is required"
            continue
        try:
            result[name] = FIELDS[name](value)
        except ValueError as exc:
            errors[name] = str(exc)
    if action == "check" and result.get("passed") is False and "reason" not in result:
        errors.setdefault("reason", "is required when passed is false (返工 needs a reason)")
    if errors:
        raise InvalidPayload(action, errors)
    return result


def _stage_effects(from_status: str, to_status: str) -> list[str]:
    """stop_stage/start_stage effects when the running SLA stage changes."""
    old = STAGE_OF_STATUS.get(from_status)
    new = STAGE_OF_STATUS.get(to_status)
    if old == new:
        return []
    effects = []
    if old is not None:
        effects.append(f"stop_stage:{old}")
    if new is not None:
        effects.append(f"start_stage:{new}")
    return effects


_CLEAR_PENDING = {"pending": None, "pending_payload": None}


def _rework(case: CaseView) -> tuple[str, dict[str, Any], list[str]]:
    """返工: back to the same department with a fresh 处置 limit and bundle deadline."""
    changes = {"rework_count": case.rework_count + 1}
    return DISPATCHED, changes, _stage_effects(case.status, DISPATCHED) + ["start_bundle"]


def _outcome(
    action: str, case: CaseView, payload: dict[str, Any]
) -> tuple[str, dict[str, Any], list[str]]:
    """The new status, the field changes and the effects of an allowed action."""
    status = case.status
    if action in ("accept_report", "verify"):
        return TO_REGISTER, {}, _stage_effects(status, TO_REGISTER)
    if action == "send_verify":
        return VERIFYING, {}, _stage_effects(status, VERIFYING)
    if action == "register":
        changes = {"urgency": payload["urgency"]} if "urgency" in payload else {}
        return REGISTERED, changes, _stage_effects(status, REGISTERED)
    if action == "cancel":
        return CANCELLED, {}, _stage_effects(status, CANCELLED)
    if action == "dispatch":
        effects = _stage_effects(status, DISPATCHED) + ["start_bundle", "start_supervision"]
        if "department_id" in payload:
            return DISPATCHED, {"department_id": payload["department_id"]}, effects
        return DISPATCHED, {}, effects + ["suggest_department"]
    if action == "accept":
        return HANDLING, {}, []
    if action == "feedback":
        return CHECKING, {}, ["record_disposed"] + _stage_effects(status, CHECKING)
    if action in ("return", "postpone", "suspend"):
        return status, {"pending": action, "pending_payload": dict(payload)}, []
    if action == "approve_return":
        changes = {**_CLEAR_PENDING, "department_id": None, "return_count": case.return_count + 1}
        return REGISTERED, changes, _stage_effects(status, REGISTERED) + ["clear_bundle"]
    if action in ("reject_return", "reject_postpone", "reject_suspend"):
        return status, dict(_CLEAR_PENDING), []
    if action == "approve_postpone":
        changes = {**_CLEAR_PENDING, "postpone_count": case.postpone_count + 1}
        return status, changes, ["extend_bundle"]
    if action == "approve_suspend":
        changes = {**_CLEAR_PENDING, "suspended_until": payload.get("until")}
        return SUSPENDED, changes, ["pause_clock"]
    if action == "resume":
        return HANDLING, {"suspended_until": None}, ["resume_clock"]
    if action == "check":
        if payload["passed"]:
            return TO_CLOSE, {}, _stage_effects(status, TO_CLOSE)
        return _rework(case)
    if action == "rework":
        return _rework(case)
    if action == "close":
        if "close_type" in payload:
            return CLOSED, {"close_type": payload["close_type"]}, _stage_effects(status, CLOSED)
        return CLOSED, {}, _stage_effects(status, CLOSED) + ["set_close_type"]
    if action == "supervise":
        return status, {"supervise_count": case.supervise_count + 1}, []
    if action == "self_handle":
        return CLOSED, {"close_type": "self"}, _stage_effects(status, CLOSED)
    raise AssertionError(f"no outcome defined for action {action!r}")  # pragma: no cover


def decide(
    case: CaseView, action: str, actor: Actor, payload: Mapping[str, Any] | None = None
) -> Decision:
    """Decide whether ``actor`` may take ``action`` on ``case`` and what follows.

    Checks, in order: the action exists (:class:`UnknownAction`), the role and the
    department (:class:`Forbidden`), the state, pending application and limits
    (:class:`ActionNotAllowed`), the payload (:class:`InvalidPayload`).
    """
    if not isinstance(case, CaseView):
        raise ValueError("case must be a CaseView")
    if not isinstance(actor, Actor):
        raise ValueError("actor must be an Actor")
    spec = ACTIONS.get(action) if isinstance(action, str) else None
    if spec is None:
        raise UnknownAction(action)
    refusal = _role_refusal(spec, case, actor)
    if refusal is not None:
        raise Forbidden(refusal)
    refusal = _state_refusal(spec, case)
    if refusal is not None:
        raise ActionNotAllowed(refusal, allowed_actions(case, actor))
    clean = validate_payload(action, payload)
    if action == "check":
        clean.setdefault("passed", True)
    if action == "approve_postpone" and "hours" not in clean:
        requested = (case.pending_payload or {}).get("hours")
        clean["hours"] = _hours(requested) if requested is not None else None
    if action == "approve_suspend" and "until" not in clean:
        requested = (case.pending_payload or {}).get("until")
        if requested is not None:
            clean["until"] = _iso_date(requested)
    to_status, changes, effects = _outcome(action, case, clean)
    return Decision(action, case.status, to_status, changes, tuple(effects), clean)


def advance(case: CaseView, decision: Decision) -> CaseView:
    """The view of ``case`` after ``decision`` (fields outside the view are ignored).

    The service applies decisions to its own records; this helper serves simulations
    and tests that walk the lifecycle without a store.
    """
    names = {f.name for f in dataclasses.fields(CaseView)}
    updates = {k: v for k, v in decision.changes.items() if k in names}
    return dataclasses.replace(case, status=decision.to_status, **updates)
