"""Emergency command (应急指挥) under /api/v1: incidents, plans, timeline, wall mode, the summary report.

Any signed-in user reads; the service checks who may write (leaders command, duty staff give orders,
the field reports, departments update their own tasks).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request, send_file

from backend.api.common import current_actor, json_body, login_required, path_id
from backend.domain import emergency as dom
from backend.services import emergency, errors, reports

bp = Blueprint("emergency", __name__)


def _body() -> dict:
    return json_body() if request.get_data(cache=True) else {}


def _created(data: dict):
    resp = jsonify(data)
    resp.status_code = 201
    return resp


@bp.get("/incidents")
@login_required()
def list_incidents():
    return jsonify(emergency.list_incidents(request.args.to_dict()))


@bp.post("/incidents")
def raise_incident():
    incident = emergency.raise_incident(json_body(), current_actor())
    resp = _created(incident)
    resp.headers["Location"] = f"/api/v1/incidents/{incident['id']}"
    return resp


@bp.get("/incidents/active")
@login_required()
def active():
    """What the wall's emergency mode shows (the incident holding the wall, or null)."""
    return jsonify(emergency.active_view())


@bp.get("/incidents/<incident_id>")
@login_required()
def get_incident(incident_id: str):
    return jsonify(emergency.get(path_id(incident_id, "incident")))


@bp.get("/incidents/<incident_id>/timeline")
@login_required()
def timeline(incident_id: str):
    view = emergency.get(path_id(incident_id, "incident"))
    return jsonify({"incident_id": view["id"], "timeline": view["timeline"]})


@bp.post("/incidents/<incident_id>/activate")
def activate(incident_id: str):
    return jsonify(emergency.activate(path_id(incident_id, "incident"), current_actor(), _body()))


@bp.post("/incidents/<incident_id>/reports")
def field_report(incident_id: str):
    return _created(emergency.field_report(path_id(incident_id, "incident"), current_actor(), json_body()))


@bp.post("/incidents/<incident_id>/orders")
def order(incident_id: str):
    return _created(emergency.order(path_id(incident_id, "incident"), current_actor(), json_body()))


@bp.post("/incidents/<incident_id>/level")
def set_level(incident_id: str):
    return jsonify(emergency.set_level(path_id(incident_id, "incident"), current_actor(), json_body()))


@bp.patch("/incidents/<incident_id>/tasks/<task_id>")
def update_task(incident_id: str, task_id: str):
    return jsonify(emergency.update_task(path_id(incident_id, "incident"), path_id(task_id, "task"),
                                         current_actor(), json_body()))


@bp.post("/incidents/<incident_id>/wall-mode")
def wall_mode(incident_id: str):
    body = json_body()
    unknown = sorted(set(body) - {"on"})
    if unknown:
        raise errors.BadInput(f"unknown fields: {', '.join(unknown)}", {"unknown": unknown})
    return jsonify(emergency.set_wall_mode(path_id(incident_id, "incident"), current_actor(), body.get("on")))


@bp.post("/incidents/<incident_id>/close")
def close(incident_id: str):
    return jsonify(emergency.close(path_id(incident_id, "incident"), current_actor(), _body()))


@bp.post("/incidents/<incident_id>/cancel")
def cancel(incident_id: str):
    return jsonify(emergency.cancel(path_id(incident_id, "incident"), current_actor(), _body()))


@bp.get("/incidents/<incident_id>/report.<ext>")
@login_required()
def report(incident_id: str, ext: str):
    if ext not in ("html", "pdf"):
        raise errors.NotFound(f"no report format {ext!r}: use report.html or report.pdf")
    p = reports.report_file(path_id(incident_id, "incident"), ext)
    return send_file(p, mimetype="text/html" if ext == "html" else "application/pdf", max_age=0)


@bp.get("/emergency/plans")
@login_required()
def list_plans():
    """预案库: every plan, filtered by `type` and `level`."""
    items = [p.to_dict() for p in emergency.plans()
             if request.args.get("type") in (None, "", p.type) and request.args.get("level") in (None, "", p.level)]
    return jsonify({"plans": items, "types": dom.INCIDENT_TYPES, "levels": dom.LEVELS,
                    "statuses": dom.STATUSES, "task_statuses": dom.TASK_STATUSES})
