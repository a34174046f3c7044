"""Cases (案件): create, list, get with timeline, take an action."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from backend.api.common import current_actor, json_body, path_id
from backend.domain import lifecycle
from backend.services import cases

bp = Blueprint("cases", __name__)


@bp.post("/cases")
def create_case():
    actor = current_actor()
    case = cases.create(json_body(), actor)
    resp = jsonify(case)
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/cases/{case['id']}"
    return resp


@bp.get("/cases")
def list_cases():
    actor = current_actor()
    return jsonify(cases.list_cases(request.args.to_dict(), actor))


@bp.get("/cases/<case_id>")
def get_case(case_id: str):
    actor = current_actor()
    return jsonify(cases.get(path_id(case_id, "case"), actor))


@bp.post("/cases/<case_id>/actions/<action>")
def take_action(case_id: str, action: str):
    actor = current_actor()
    payload = json_body() if request.get_data(cache=True) else {}
    return jsonify(cases.apply(path_id(case_id, "case"), action, actor, payload))


@bp.get("/actions")
def actions():
    """Every action with its Chinese term, roles, states and fields."""
    return jsonify({"actions": cases.describe_actions(), "statuses": lifecycle.STATUSES,
                    "roles": lifecycle.ROLES, "sources": lifecycle.SOURCES})
