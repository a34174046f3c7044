"""GET /audit/verify: the hash chain of every event row checked (审计链校验)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend.api.common import login_required
from backend.services import audit

bp = Blueprint("audit", __name__)


@bp.get("/audit/verify")
@login_required({"leader", "supervisor", "admin"})
def verify():
    return jsonify(audit.verify().to_dict())
