"""GET /evaluation/departments?from=&to= (专业部门综合评价)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, jsonify, request

from backend.api.common import current_actor
from backend.services import errors, evaluation
from backend.services.context import current

bp = Blueprint("evaluation", __name__)


def _time(name: str, default: datetime) -> datetime:
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.BadInput(f"'{name}' must be an ISO 8601 date or time", {"field": name, "value": raw}) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=current().calendar.tz)
    return t.astimezone(timezone.utc)


@bp.get("/evaluation/departments")
def departments():
    current_actor()
    now = datetime.now(timezone.utc)
    end = _time("to", now)
    start = _time("from", end - timedelta(days=30))
    return jsonify(evaluation.departments(start, end))
