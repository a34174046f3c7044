"""The case lifecycle (案件流程): roles, states, actions, decisions."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.domain import lifecycle as lc
from backend.domain.lifecycle import (
    ACTIONS,
    ActionNotAllowed,
    Actor,
    CaseView,
    Forbidden,
    InvalidPayload,
    UnknownAction,
    advance,
    allowed_actions,
    decide,
)

DEPT = 7
OTHER_DEPT = 8

ACTORS = {
    role: Actor(f"{role}1", role, DEPT if role == lc.DEPARTMENT else None) for role in lc.ROLES
}
OTHER_DEPARTMENT = Actor("dept8", lc.DEPARTMENT, OTHER_DEPT)

# A payload each action accepts.
VALID = {
    "accept_report": {},
    "send_verify": {"inspector": "zhang"},
    "verify": {"result": "confirmed"},
    "register": {},
    "cancel": {"note": "不符合立案条件"},
    "dispatch": {"department_id": DEPT},
    "accept": {},
    "feedback": {"note": "已清理", "photos": ["after.jpg"]},
    "return": {"reason": "非本部门职责"},
    "approve_return": {},
    "reject_return": {"note": "属于本部门"},
    "postpone": {"reason": "需要施工", "hours": 16},
    "approve_postpone": {},
    "reject_postpone": {},
    "suspend": {"reason": "季节性问题", "until": "2027-03-01"},
    "approve_suspend": {},
    "reject_suspend": {},
    "resume": {},
    "check": {},
    "rework": {"reason": "未清理干净"},
    "close": {},
    "supervise": {"level": 2},
    "self_handle": {"note": "已当场扶正"},
}

# Where each action leads (None: the status does not change).
TO_STATUS = {
    "accept_report": lc.TO_REGISTER,
    "send_verify": lc.VERIFYING,
    "verify": lc.TO_REGISTER,
    "register": lc.REGISTERED,
    "cancel": lc.CANCELLED,
    "dispatch": lc.DISPATCHED,
    "accept": lc.HANDLING,
    "feedback": lc.CHECKING,
    "return": None,
    "approve_return": lc.REGISTERED,
    "reject_return": None,
    "postpone": None,
    "approve_postpone": None,
    "reject_postpone": None,
    "suspend": None,
    "approve_suspend": lc.SUSPENDED,
    "reject_suspend": None,
    "resume": lc.HANDLING,
    "check": lc.TO_CLOSE,
    "rework": lc.DISPATCHED,
    "close": lc.CLOSED,
    "supervise": None,
    "self_handle": lc.CLOSED,
}


def case_for(action: str, status: str) -> CaseView:
    """A case of department DEPT in ``status`` with the pending application ``action`` decides."""
    return CaseView(status=status, department_id=DEPT, pending=ACTIONS[action].needs_pending)


def table(kind: str):
    rows = []
    for name, spec in ACTIONS.items():
        if kind == "allowed":
            for role in sorted(spec.roles | {lc.ADMIN}):
                for status in sorted(spec.from_states):
                    rows.append((name, role, status))
        elif kind == "wrong_state":
            role = sorted(spec.roles)[0]
            for status in sorted(set(lc.STATUSES) - spec.from_states):
                rows.append((name, role, status))
        elif kind == "wrong_role":
            for role in sorted(set(lc.ROLES) - spec.roles - {lc.ADMIN}):
                rows.append((name, role))
    return rows


def test_tables_cover_every_action():
    assert set(VALID) == set(ACTIONS) == set(TO_STATUS)


# ------------------------------------------------------------------ per-action table


@pytest.mark.parametrize("action, role, status", table("allowed"))
def test_action_allowed_for_its_roles_in_its_states(action, role, status):
    case = case_for(action, status)
    decision = decide(case, action, ACTORS[role], VALID[action])
    assert decision.action == action
    assert decision.from_status == status
    assert decision.to_status == (TO_STATUS[action] or status)
    assert "status" not in decision.changes
    assert action in allowed_actions(case, ACTORS[role])


@pytest.mark.parametrize("action, role, status", table("wrong_state"))
def test_action_refused_in_other_states_with_allowed_list(action, role, status):
    case = case_for(action, status)
    actor = ACTORS[role]
    with pytest.raises(ActionNotAllowed) as info:
        decide(case, action, actor, VALID[action])
    error = info.value
    assert error.http_status == 409 and error.code == "not_allowed"
    assert error.allowed == allowed_actions(case, actor)
    assert action not in error.allowed
    assert lc.STATUSES[status] in error.message
    assert "allowed now: " + (", ".join(error.allowed) or "none") in error.message


@pytest.mark.parametrize("action, role", table("wrong_role"))
def test_action_forbidden_for_other_roles(action, role):
    status = sorted(ACTIONS[action].from_states)[0]
    with pytest.raises(Forbidden) as info:
        decide(case_for(action, status), action, ACTORS[role], VALID[action])
    assert info.value.http_status == 403
    assert role in info.value.message and action in info.value.message


@pytest.mark.parametrize("action", [n for n, s in ACTIONS.items() if s.for_department])
def test_department_may_not_act_on_another_departments_case(action):
    status = sorted(ACTIONS[action].from_states)[0]
    case = case_for(action, status)
    with pytest.raises(Forbidden, match=f"belongs to department {DEPT}"):
        decide(case, action, OTHER_DEPARTMENT, VALID[action])
    assert action not in allowed_actions(case, OTHER_DEPARTMENT)


def test_department_may_not_act_on_an_unassigned_case():
    case = CaseView(status=lc.DISPATCHED, department_id=None)
    with pytest.raises(Forbidden):
        decide(case, "accept", ACTORS[lc.DEPARTMENT])


def test_public_may_take_no_action_anywhere():
    for status in lc.STATUSES:
        assert allowed_actions(CaseView(status=status), ACTORS[lc.PUBLIC]) == []


def test_admin_may_take_department_actions_on_any_department():
    case = CaseView(status=lc.DISPATCHED, department_id=OTHER_DEPT)
    assert decide(case, "accept", ACTORS[lc.ADMIN]).to_status == lc.HANDLING


# ---------------------------------------------------------------- pending and limits


@pytest.mark.parametrize("action", [n for n, s in ACTIONS.items() if s.blocked_by_pending])
@pytest.mark.parametrize("pending", sorted(lc.PENDING_KINDS))
def test_department_actions_wait_for_a_pending_application(action, pending):
    status = sorted(ACTIONS[action].from_states)[0]
    case = CaseView(status=status, department_id=DEPT, pending=pending)
    with pytest.raises(ActionNotAllowed, match="pending approval") as info:
        decide(case, action, ACTORS[lc.DEPARTMENT], VALID[action])
    assert action not in info.value.allowed


@pytest.mark.parametrize("action", [n for n, s in ACTIONS.items() if s.needs_pending])
def test_approvals_need_their_own_pending_application(action):
    status = sorted(ACTIONS[action].from_states)[0]
    needed = ACTIONS[action].needs_pending
    for pending in [None] + sorted(set(lc.PENDING_KINDS) - {needed}):
        case = CaseView(status=status, department_id=DEPT, pending=pending)
        with pytest.raises(ActionNotAllowed, match=f"no {needed}"):
            decide(case, action, ACTORS[lc.DISPATCHER], VALID[action])


def test_pending_application_offers_only_its_decision_to_the_centre():
    case = CaseView(status=lc.HANDLING, department_id=DEPT, pending="postpone")
    assert allowed_actions(case, ACTORS[lc.DISPATCHER]) == [
        "approve_postpone",
        "reject_postpone",
    ]
    assert allowed_actions(case, ACTORS[lc.DEPARTMENT]) == []


# ------------------------------------------------------------------------ payloads


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_unknown_payload_field_is_refused(action):
    status = sorted(ACTIONS[action].from_states)[0]
    payload = {**VALID[action], "colour": "red"}
    with pytest.raises(InvalidPayload) as info:
        decide(case_for(action, status), action, ACTORS[lc.ADMIN], payload)
    assert info.value.http_status == 400
    assert "colour" in info.value.details
    assert "unknown field" in info.value.details["colour"]


@pytest.mark.parametrize("action", [n for n, s in ACTIONS.items() if s.required])
def test_missing_required_field_is_refused(action):
    status = sorted(ACTIONS[action].from_states)[0]
    with pytest.raises(InvalidPayload) as info:
        decide(case_for(action, status), action, ACTORS[lc.ADMIN], {})
    assert set(info.value.details) == set(ACTIONS[action].required)
    assert all(text == "is required" for text in info.value.details.values())


@pytest.mark.parametrize(
    "action, field, value",
    [
        ("cancel", "note", ""),
        ("cancel", "note", "   "),
        ("cancel", "note", 5),
        ("cancel", "note", "x" * (lc.MAX_TEXT + 1)),
        ("verify", "result", "maybe"),
        ("verify", "photos", "a.jpg"),
        ("verify", "photos", ["a.jpg", ""]),
        ("verify", "photos", ["a.jpg", 3]),
        ("verify", "photos", ["p.jpg"] * (lc.MAX_PHOTOS + 1)),
        ("register", "urgency", "very"),
        ("dispatch", "department_id", 0),
        ("dispatch", "department_id", "7"),
        ("dispatch", "department_id", True),
        ("dispatch", "department_id", 7.0),
        ("postpone", "hours", 0),
        ("postpone", "hours", -3),
        ("postpone", "hours", 721),
        ("postpone", "hours", "8"),
        ("postpone", "hours", float("nan")),
        ("postpone", "hours", True),
        ("suspend", "until", "2027-02-30"),
        ("suspend", "until", "01/03/2027"),
        ("suspend", "until", "2027-03-01T00:00:00"),
        ("suspend", "until", 20270301),
        ("check", "passed", "yes"),
        ("close", "close_type", "self"),
        ("close", "close_type", "fast"),
        ("supervise", "level", 4),
        ("supervise", "level", "1"),
        ("supervise", "level", 1.0),
    ],
)
def test_bad_field_value_is_refused_naming_the_field(action, field, value):
    status = sorted(ACTIONS[action].from_states)[0]
    payload = {**VALID[action], field: value}
    with pytest.raises(InvalidPayload) as info:
        decide(case_for(action, status), action, ACTORS[lc.ADMIN], payload)
    assert list(info.value.details) == [field]
    assert field in info.value.message


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(InvalidPayload) as info:
        decide(CaseView(status=lc.HANDLING, department_id=DEPT), "postpone",
               ACTORS[lc.DEPARTMENT], {"hours": -1, "extra": 1})
    assert set(info.value.details) == {"reason", "hours", "extra"}


def test_payload_must_be_a_mapping():
    with pytest.raises(InvalidPayload, match="must be an object"):
        decide(CaseView(status=lc.TO_CLOSE), "close", ACTORS[lc.SUPERVISOR], ["normal"])


def test_payload_is_normalised():
    case = CaseView(status=lc.HANDLING, department_id=DEPT)
    decision = decide(case, "postpone", ACTORS[lc.DEPARTMENT],
                      {"reason": "  需要施工 ", "hours": 8})
    assert decision.payload == {"reason": "需要施工", "hours": 8.0}
    assert isinstance(decision.payload["hours"], float)


def test_none_counts_as_absent_for_optional_and_missing_for_required():
    case = CaseView(status=lc.TO_CLOSE)
    assert decide(case, "close", ACTORS[lc.SUPERVISOR], {"close_type": None}).payload == {}
    with pytest.raises(InvalidPayload, match="reason: is required"):
        decide(CaseView(status=lc.CHECKING, department_id=DEPT), "rework",
               ACTORS[lc.SUPERVISOR], {"reason": None})


def test_unknown_action_lists_the_actions():
    with pytest.raises(UnknownAction) as info:
        decide(CaseView(status=lc.REPORTED), "teleport", ACTORS[lc.ADMIN])
    assert info.value.http_status == 404
    assert info.value.actions == list(ACTIONS)
    assert "dispatch" in info.value.message


def test_errors_share_one_base_with_code_and_message():
    for cls in (UnknownAction, Forbidden, ActionNotAllowed, InvalidPayload):
        assert issubclass(cls, lc.LifecycleError)
    codes = {cls.code for cls in (UnknownAction, Forbidden, ActionNotAllowed, InvalidPayload)}
    assert len(codes) == 4


# ---------------------------------------------------------------------- happy path


def step(case, action, role, payload=None):
    decision = decide(case, action, ACTORS[role], payload)
    return advance(case, decision), decision


def test_full_happy_path_from_public_report_to_closed():
    case = CaseView(status=lc.initial_status("public"))
    assert case.status == lc.REPORTED
    case, d = step(case, "send_verify", lc.OPERATOR, {"inspector": "zhang"})
    assert (case.status, d.effects) == (lc.VERIFYING, ("stop_stage:accept", "start_stage:verify"))
    case, d = step(case, "verify", lc.INSPECTOR, {"result": "confirmed", "photos": ["a.jpg"]})
    assert (case.status, d.effects) == (lc.TO_REGISTER, ("stop_stage:verify", "start_stage:register"))
    case, d = step(case, "register", lc.SUPERVISOR, {"urgency": "urgent"})
    assert case.status == lc.REGISTERED
    assert d.changes == {"urgency": "urgent"}
    assert d.effects == ("stop_stage:register", "start_stage:dispatch")
    case, d = step(case, "dispatch", lc.DISPATCHER, {"department_id": DEPT})
    assert (case.status, case.department_id) == (lc.DISPATCHED, DEPT)
    assert d.effects == ("stop_stage:dispatch", "start_stage:dispose", "start_bundle",
                         "start_supervision")
    case, d = step(case, "accept", lc.DEPARTMENT)
    assert (case.status, d.effects) == (lc.HANDLING, ())
    case, d = step(case, "feedback", lc.DEPARTMENT, {"note": "已修复"})
    assert case.status == lc.CHECKING
    assert d.effects == ("record_disposed", "stop_stage:dispose", "start_stage:check")
    case, d = step(case, "check", lc.INSPECTOR)
    assert case.status == lc.TO_CLOSE and d.payload == {"passed": True}
    case, d = step(case, "close", lc.SUPERVISOR)
    assert case.status == lc.CLOSED
    assert d.effects == ("stop_stage:close", "set_close_type")
    assert allowed_actions(case, ACTORS[lc.ADMIN]) == []


def test_inspector_report_starts_at_to_register_and_accept_report_skips_verify():
    assert lc.initial_status("inspector") == lc.TO_REGISTER
    case, _ = step(CaseView(status=lc.initial_status("superior")), "accept_report", lc.OPERATOR)
    assert case.status == lc.TO_REGISTER


def test_dispatch_without_department_asks_the_service_to_suggest_one():
    d = decide(CaseView(status=lc.REGISTERED), "dispatch", ACTORS[lc.SUPERVISOR])
    assert "department_id" not in d.changes
    assert "suggest_department" in d.effects


def test_close_with_explicit_type_sets_it():
    d = decide(CaseView(status=lc.TO_CLOSE), "close", ACTORS[lc.SUPERVISOR],
               {"close_type": "special"})
    assert d.changes == {"close_type": "special"}
    assert "set_close_type" not in d.effects


# ------------------------------------------------------------------------ branches


def test_cancel_needs_a_note_and_ends_the_case():
    case = CaseView(status=lc.VERIFYING)
    case, d = step(case, "cancel", lc.SUPERVISOR, {"note": "重复上报"})
    assert case.status == lc.CANCELLED
    assert not lc.is_open(case.status)
    assert d.effects == ("stop_stage:verify",)


def test_return_approved_goes_back_to_registered_without_department():
    case = CaseView(status=lc.HANDLING, department_id=DEPT)
    case, d = step(case, "return", lc.DEPARTMENT, {"reason": "非本部门职责"})
    assert (case.status, case.pending) == (lc.HANDLING, "return")
    assert case.pending_payload == {"reason": "非本部门职责"}
    case, d = step(case, "approve_return", lc.DISPATCHER)
    assert case == CaseView(status=lc.REGISTERED, return_count=1)
    assert d.effects == ("stop_stage:dispose", "start_stage:dispatch", "clear_bundle")


def test_return_rejected_keeps_the_state_and_clears_pending():
    case = CaseView(status=lc.DISPATCHED, department_id=DEPT, pending="return",
                    pending_payload={"reason": "x"})
    case, d = step(case, "reject_return", lc.SUPERVISOR, {"note": "属于你部门"})
    assert case == CaseView(status=lc.DISPATCHED, department_id=DEPT)
    assert d.effects == ()


def test_postpone_twice_then_third_application_refused():
    case = CaseView(status=lc.HANDLING, department_id=DEPT)
    case, _ = step(case, "postpone", lc.DEPARTMENT, {"reason": "施工", "hours": 16})
    case, d = step(case, "approve_postpone", lc.DISPATCHER)
    assert d.payload["hours"] == 16.0  # the requested hours
    assert d.effects == ("extend_bundle",)
    assert (case.postpone_count, case.pending) == (1, None)

    case, _ = step(case, "postpone", lc.DEPARTMENT, {"reason": "材料未到"})
    case, d = step(case, "approve_postpone", lc.SUPERVISOR, {"hours": 4})
    assert d.payload["hours"] == 4.0  # the approver's override
    assert case.postpone_count == 2

    with pytest.raises(ActionNotAllowed, match="at most 2") as info:
        decide(case, "postpone", ACTORS[lc.DEPARTMENT], {"reason": "再延"})
    assert "postpone" not in info.value.allowed
    assert "feedback" in info.value.allowed


def test_postpone_without_hours_means_the_default_extension():
    case = CaseView(status=lc.DISPATCHED, department_id=DEPT)
    case, _ = step(case, "postpone", lc.DEPARTMENT, {"reason": "施工"})
    _, d = step(case, "approve_postpone", lc.DISPATCHER)
    assert d.payload == {"hours": None}  # service: +1 × the original 处置 limit


def test_postpone_rejected_does_not_count():
    case = CaseView(status=lc.HANDLING, department_id=DEPT, pending="postpone",
                    pending_payload={"reason": "x"})
    case, _ = step(case, "reject_postpone", lc.DISPATCHER)
    assert (case.postpone_count, case.pending, case.status) == (0, None, lc.HANDLING)


def test_suspend_approved_pauses_and_resume_restarts():
    case = CaseView(status=lc.HANDLING, department_id=DEPT)
    case, _ = step(case, "suspend", lc.DEPARTMENT, {"reason": "冬季不能施工", "until": "2027-03-01"})
    case, d = step(case, "approve_suspend", lc.DISPATCHER)
    assert case.status == lc.SUSPENDED and case.pending is None
    assert d.changes["suspended_until"] == "2027-03-01"
    assert d.effects == ("pause_clock",)
    assert lc.STAGE_OF_STATUS[lc.SUSPENDED] is None
    assert "supervise" in allowed_actions(case, ACTORS[lc.LEADER])
    case, d = step(case, "resume", lc.SYSTEM)
    assert case.status == lc.HANDLING
    assert d.effects == ("resume_clock",)
    assert d.changes == {"suspended_until": None}


def test_suspend_rejected_stays_handling():
    case = CaseView(status=lc.HANDLING, department_id=DEPT, pending="suspend")
    case, _ = step(case, "reject_suspend", lc.DISPATCHER)
    assert (case.status, case.pending) == (lc.HANDLING, None)


def test_rework_returns_to_the_same_department_and_counts():
    case = CaseView(status=lc.CHECKING, department_id=DEPT)
    case, d = step(case, "rework", lc.SUPERVISOR, {"reason": "未清理干净"})
    assert (case.status, case.department_id, case.rework_count) == (lc.DISPATCHED, DEPT, 1)
    assert d.effects == ("stop_stage:check", "start_stage:dispose", "start_bundle")
    case, _ = step(case, "accept", lc.DEPARTMENT)
    case, _ = step(case, "feedback", lc.DEPARTMENT, {"note": "再次清理"})
    case, _ = step(case, "check", lc.INSPECTOR, {"passed": True})
    case, d = step(case, "rework", lc.DISPATCHER, {"reason": "复查不合格"})
    assert case.rework_count == 2
    assert d.effects[0] == "stop_stage:close"


def test_failed_check_has_the_effect_of_rework():
    case = CaseView(status=lc.CHECKING, department_id=DEPT, rework_count=1)
    d = decide(case, "check", ACTORS[lc.INSPECTOR], {"passed": False, "reason": "仍有垃圾"})
    r = decide(case, "rework", ACTORS[lc.INSPECTOR], {"reason": "仍有垃圾"})
    assert (d.to_status, d.changes, d.effects) == (r.to_status, r.changes, r.effects)
    assert d.changes == {"rework_count": 2}


def test_failed_check_needs_a_reason():
    case = CaseView(status=lc.CHECKING, department_id=DEPT)
    with pytest.raises(InvalidPayload) as info:
        decide(case, "check", ACTORS[lc.INSPECTOR], {"passed": False})
    assert list(info.value.details) == ["reason"]


@pytest.mark.parametrize("status", [lc.REPORTED, lc.TO_REGISTER])
def test_self_handle_closes_with_type_self(status):
    case, d = step(CaseView(status=status), "self_handle", lc.INSPECTOR, {"note": "已扶正"})
    assert case.status == lc.CLOSED
    assert d.changes == {"close_type": "self"}


@pytest.mark.parametrize("status", sorted(ACTIONS["supervise"].from_states))
def test_supervise_keeps_the_state_and_counts(status):
    case = CaseView(status=status, department_id=DEPT, supervise_count=2)
    after, d = step(case, "supervise", lc.LEADER, {"note": "尽快处理", "level": 3})
    assert after.status == status
    assert after.supervise_count == 3
    assert d.effects == ()


# ---------------------------------------------------------- states, sources, views


def test_every_open_status_has_a_stage_entry_and_final_ones_none():
    assert set(lc.STAGE_OF_STATUS) == set(lc.OPEN_STATUSES)
    assert lc.OPEN_STATUSES | lc.FINAL_STATUSES == set(lc.STATUSES)


def test_status_changes_name_a_known_stage():
    stages = {"accept", "verify", "register", "dispatch", "dispose", "check", "close"}
    assert {s for s in lc.STAGE_OF_STATUS.values() if s} == stages


def test_actions_for_state():
    assert lc.actions_for_state(lc.REPORTED) == [
        "accept_report", "send_verify", "cancel", "self_handle"
    ]
    assert lc.actions_for_state(lc.CLOSED) == []
    assert lc.actions_for_state(lc.CANCELLED) == []
    with pytest.raises(ValueError, match="unknown status"):
        lc.actions_for_state("lost")


@pytest.mark.parametrize("source", sorted(lc.SOURCES))
def test_initial_status_by_source(source):
    expected = lc.TO_REGISTER if source == "inspector" else lc.REPORTED
    assert lc.initial_status(source) == expected


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown source 'fax'"):
        lc.initial_status("fax")


def test_public_may_only_report_as_public():
    assert lc.report_status(ACTORS[lc.PUBLIC], "public") == lc.REPORTED
    with pytest.raises(Forbidden):
        lc.report_status(ACTORS[lc.PUBLIC], "inspector")
    assert lc.report_status(ACTORS[lc.INSPECTOR], "inspector") == lc.TO_REGISTER
    assert lc.report_status(ACTORS[lc.SYSTEM], "sensor") == lc.REPORTED
    with pytest.raises(Forbidden):
        lc.report_status(ACTORS[lc.DEPARTMENT], "hotline")


def test_public_status_maps_many_states_to_open_or_closed():
    for status in lc.STATUSES:
        public = lc.public_status(status)
        assert public.status == ("open" if lc.is_open(status) else "closed")
        assert public.label
    assert lc.public_status(lc.CLOSED).label == "已办结"
    assert lc.public_status(lc.CANCELLED).status == "closed"
    assert lc.public_status(lc.HANDLING) == lc.public_status(lc.DISPATCHED)
    with pytest.raises(ValueError):
        lc.public_status("nowhere")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"username": "", "role": "operator"}, "username"),
        ({"username": "a", "role": "mayor"}, "unknown role"),
        ({"username": "a", "role": "department"}, "needs a department_id"),
        ({"username": "a", "role": "department", "department_id": "7"}, "integer"),
    ],
)
def test_bad_actor_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Actor(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"status": "open"}, "unknown status"),
        ({"status": "handling", "pending": "holiday"}, "unknown pending"),
        ({"status": "handling", "rework_count": -1}, "rework_count"),
        ({"status": "handling", "department_id": "7"}, "department_id"),
    ],
)
def test_bad_case_view_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaseView(**kwargs)


def test_case_view_from_record_reads_mappings_and_objects():
    record = {"status": "handling", "department_id": DEPT, "postpone_count": None,
              "title": "ignored"}
    assert CaseView.from_record(record) == CaseView(status=lc.HANDLING, department_id=DEPT)

    class Row:
        status = "checking"
        department_id = 3
        rework_count = 2

    assert CaseView.from_record(Row()) == CaseView(status=lc.CHECKING, department_id=3,
                                                  rework_count=2)
    with pytest.raises(ValueError, match="needs a status"):
        CaseView.from_record({"department_id": 1})


def test_decide_refuses_wrong_argument_types():
    with pytest.raises(ValueError, match="CaseView"):
        decide({"status": "handling"}, "accept", ACTORS[lc.ADMIN])
    with pytest.raises(ValueError, match="Actor"):
        decide(CaseView(status=lc.DISPATCHED), "accept", "admin")


# ----------------------------------------------------------- random walk (property)

WALK_ACTORS = list(ACTORS.values()) + [OTHER_DEPARTMENT]


def accepted_actions(case: CaseView, actor: Actor) -> set[str]:
    accepted = set()
    for action in ACTIONS:
        try:
            decide(case, action, actor, VALID[action])
        except (ActionNotAllowed, Forbidden):
            continue
        accepted.add(action)
    return accepted


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(lc.SOURCES)), data=st.data())
def test_random_walk_stays_defined_and_allowed_matches_decide(source, data):
    case = CaseView(status=lc.initial_status(source))
    for _ in range(40):
        moves = []
        for actor in WALK_ACTORS:
            allowed = allowed_actions(case, actor)
            assert set(allowed) == accepted_actions(case, actor)
            moves += [(actor, action) for action in allowed]
        if not moves:
            assert case.status in lc.FINAL_STATUSES
            return
        assert case.status in lc.OPEN_STATUSES
        actor, action = data.draw(st.sampled_from(moves))
        payload = dict(VALID[action])
        if action == "dispatch" and data.draw(st.booleans()):
            payload = {}
        if action == "check" and data.draw(st.booleans()):
            payload = {"passed": False, "reason": "不合格"}
        decision = decide(case, action, actor, payload)
        assert decision.to_status in lc.STATUSES
        case = advance(case, decision)
        if "suggest_department" in decision.effects:  # what the service does
            case = CaseView.from_record({**case.__dict__, "department_id": DEPT})
        assert case.postpone_count <= lc.MAX_POSTPONES
        if case.pending is not None:
            assert case.status in (lc.DISPATCHED, lc.HANDLING)
        if case.status in (lc.DISPATCHED, lc.HANDLING, lc.CHECKING, lc.TO_CLOSE, lc.SUSPENDED):
            assert case.department_id == DEPT
