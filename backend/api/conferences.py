"""Video conference rooms (视频会商) under /api/v1: create (leader), list, get with join links."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from backend.api.common import current_actor, json_body, login_required, path_id
from backend.services import conferences

bp = Blueprint("conferences", __name__)


@bp.post("/conferences")
def create_conference():
    room = conferences.create(json_body(), current_actor(), request.host)
    resp = jsonify(room)
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/conferences/{room['id']}"
    return resp


@bp.get("/conferences")
@login_required()
def list_conferences():
    return jsonify(conferences.list_rooms(current_actor(), request.args.to_dict()))


@bp.get("/conferences/<room_id>")
@login_required()
def get_conference(room_id: str):
    return jsonify(conferences.get(path_id(room_id, "conference"), current_actor(), request.host))
