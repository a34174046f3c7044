"""GET /health: is the database reachable, is Redis reachable, how many events wait in the outbox, the screens."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from backend.services.context import current

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    ctx = current()
    out = {"database": {"ok": False}, "redis": {"ok": False}}
    try:
        with ctx.reader.connect() as conn:
            conn.execute(text("SELECT 1"))
        out["database"] = {"ok": True, "dialect": ctx.engine.dialect.name}
        out["outbox_pending"] = ctx.outbox.pending()
    except Exception as exc:  # reported, not raised: health must answer
        out["database"] = {"ok": False, "error": str(exc)[:200]}
    try:
        ctx.redis.ping()
        out["redis"] = {"ok": True, "embedded": not ctx.config.redis_url}
    except Exception as exc:
        out["redis"] = {"ok": False, "error": str(exc)[:200]}
    from backend import realtime

    if realtime.fanout is not None:  # the screens this web process pushes to (wall, consoles)
        out["screens"] = {"websocket": len(realtime.fanout.links), **realtime.fanout.stats}
    ok = out["database"]["ok"] and out["redis"]["ok"]
    out["status"] = "ok" if ok else "degraded"
    resp = jsonify(out)
    resp.status_code = 200 if ok else 503
    return resp
