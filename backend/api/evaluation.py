"""GET /evaluation/departments?from=&to= (专业部门综合评价)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, jsonify, request

from backend.api.common import current_actor
from backend.services import evaluation
from backend.services.cases import parse_time

bp = Blueprint("evaluation", __name__)


def _time(name: str, default: datetime) -> datetime:
    raw = request.args.get(name)
    return parse_time(raw, name) if raw else default


@bp.get("/evaluation/departments")
def departments():
    current_actor()
    now = datetime.now(timezone.utc)
    end = _time("to", now)
    start = _time("from", end - timedelta(days=30))
    return jsonify(evaluation.departments(start, end))
