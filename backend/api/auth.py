"""POST /auth/token (签发令牌), GET /me."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from backend.api.common import current_actor, json_body
from backend.services import auth

bp = Blueprint("auth", __name__)


@bp.post("/auth/token")
def token():
    data = json_body()
    return jsonify(auth.issue_token(data.get("username"), data.get("password"), request.remote_addr or ""))


@bp.get("/me")
def me():
    current_actor()
    return jsonify(g.user)
