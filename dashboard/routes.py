"""HTTP routes of the screens: the wall's state and layers, the console's login, state and photos."""
from __future__ import annotations

import gzip
import json
import threading
import time
import zlib

import orjson
from flask import Blueprint, Response, redirect, request
from markupsafe import escape

from backend.services import errors, wall
from backend.services import uploads
from backend.services.context import current
from dashboard import security

bp = Blueprint("screens", __name__)

LAYER_TTL = 60.0
_layers: dict[str, tuple[float, bytes]] = {}
_layers_lock = threading.Lock()


def json_response(obj, status: int = 200, cache: str = "no-store") -> Response:
    """JSON, gzip-compressed when the client accepts it (the state of 20,000 cases is ~1 MB raw)."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    resp = Response(status=status, mimetype="application/json")
    if len(body) > 2048 and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = gzip.compress(body, compresslevel=5)
        resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Vary"] = "Accept-Encoding"
    resp.set_data(body)
    resp.headers["Cache-Control"] = cache
    return resp


def _int(raw: str, what: str) -> int:
    try:
        return int(raw)
    except ValueError as exc:
        raise errors.NotFound(f"{what} {raw!r} does not exist") from exc


# --- the wall ------------------------------------------------------------------------------------

# The wall's state is read and encoded at most once per STATE_MAX_AGE seconds (a hall of screens loading
# or reconnecting together costs one read of 20,000 cases, not fifty). A snapshot that old is still exact
# for a screen: it carries its `event_id`, and the screen's Socket.IO hello replays every event after it.
STATE_MAX_AGE = 3.0


class EncodedState:
    """One wall snapshot as JSON, and gzip-compressed up to its last `}` (the per-request `video` goes after)."""

    def __init__(self, ctx, state: dict):
        t0 = time.perf_counter()
        self.ctx, self.at, self.event_id = ctx, time.monotonic(), state["event_id"]
        # orjson: the same compact UTF-8 JSON as json.dumps, in a fifth of the time (3 MB for 20,000 cases:
        # ~9 against ~52 ms alone, and this runs while a loading browser shares the cores)
        body = orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)
        self.head = body[:-1]  # everything but the closing brace
        self._gzip = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: 3× faster than 5, ~15% bigger
        self.gzip_head = self._gzip.compress(self.head) + self._gzip.flush(zlib.Z_SYNC_FLUSH)
        self.timings: dict = {}
        self.encode_ms = (time.perf_counter() - t0) * 1000

    def fresh(self, ctx) -> bool:
        return self.ctx is ctx and time.monotonic() - self.at < STATE_MAX_AGE

    def body(self, extra: dict, gzipped: bool) -> bytes:
        tail = b"," + json.dumps(extra, ensure_ascii=False, separators=(",", ":"))[1:-1].encode() + b"}"
        if not gzipped:
            return self.head + tail
        z = self._gzip.copy()
        return self.gzip_head + z.compress(tail) + z.flush()


_state: EncodedState | None = None
_state_lock = threading.Lock()


def wall_snapshot() -> EncodedState:
    """The wall's current snapshot, read again when older than STATE_MAX_AGE (one reader at a time)."""
    global _state
    from backend import realtime

    ctx = current()
    hit = _state
    if hit is not None and hit.fresh(ctx):
        return hit
    with _state_lock:
        if _state is not None and _state.fresh(ctx):
            return _state
        bridge = realtime.bridge()
        timings: dict = {}
        if bridge is not None:
            bridge.start()  # it keeps the open cases from the stream: later states need no store read
        st = wall.state(summary=bridge.fresh_summary() if bridge else None, timings=timings,
                        open_now=bridge.open_cases_now() if bridge else None)
        _state = EncodedState(ctx, st)
        _state.timings = timings
        return _state


@bp.get("/wall/api/state")
def wall_state():
    t0 = time.monotonic()
    snap = wall_snapshot()
    cached = snap.at < t0
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    resp = Response(snap.body({"video": security.video_settings()}, gzipped), mimetype="application/json")
    if gzipped:
        resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Vary"] = "Accept-Encoding"
    resp.headers["Cache-Control"] = "no-store"
    # the read and encode times of the snapshot (or its age when read earlier), for the browser's resource timing
    if cached:
        resp.headers["Server-Timing"] = f"age;dur={(t0 - snap.at) * 1000:.0f};desc=\"snapshot read earlier\""
    else:
        resp.headers["Server-Timing"] = ", ".join([f"{k};dur={v:.0f}" for k, v in snap.timings.items()]
                                                  + [f"encode;dur={snap.encode_ms:.0f}"])
    return resp


@bp.get("/wall/api/cases/<case_id>")
def wall_case(case_id: str):
    return json_response(wall.public_case(_int(case_id, "case")))


@bp.get("/wall/api/layers/<name>")
def wall_layer(name: str):
    now = time.monotonic()
    with _layers_lock:
        hit = _layers.get(name)
    if hit is None or now - hit[0] > LAYER_TTL:
        body = json.dumps(wall.base_layer(name), ensure_ascii=False, separators=(",", ":")).encode()
        hit = (now, body)
        with _layers_lock:
            _layers[name] = hit
    return json_response(json.loads(hit[1]), cache="private, max-age=300")


@bp.get("/wall/api/vehicles")
def wall_vehicles():
    """Vehicles and field staff with their latest positions (the vehicle layer's initial state)."""
    return json_response(wall.vehicles())


@bp.get("/wall/api/vehicles/<ref>/track")
def wall_vehicle_track(ref: str):
    """The last hour of one vehicle (轨迹), as a GeoJSON line."""
    return json_response(wall.vehicle_track(ref))


@bp.get("/wall/api/cameras")
def wall_cameras():
    """The cameras (视频点位) in display coordinates, for the camera layer and the video wall's lists."""
    from backend.services import cameras

    out = []
    for c in cameras.list_cameras():
        lat, lon = wall.display_point(c["lat"], c["lon"])
        out.append({"id": c["id"], "name": c["name"], "lat": lat, "lon": lon, "status": c["status"]})
    return json_response({"cameras": out})


@bp.get("/wall/api/emergency")
def wall_emergency():
    """The incident holding the wall (应急模式), or {"incident": null}."""
    return json_response(wall.emergency_view())


@bp.get("/wall/api/components")
def wall_components():
    from backend.services import reference

    try:
        west, south, east, north = (float(x) for x in request.args.get("bbox", "").split(","))
    except ValueError as exc:
        raise errors.BadInput("'bbox' must be west,south,east,north") from exc
    out = []
    for c in reference.components((west, south, east, north), limit=2000):
        lat, lon = wall.display_point(c["lat"], c["lon"])
        out.append({"code": c["code"], "name": c["name"], "status": c["status"], "lat": lat, "lon": lon})
    return json_response({"components": out})


# --- the console ----------------------------------------------------------------------------------

@bp.get("/console")
def console_root():
    return redirect("/console/")


@bp.get("/console/api/state")
def console_state():
    user = security.session_user()
    dept = user.actor.department_id if user and user.is_department else None
    if user and user.is_department and dept is None:
        raise errors.Forbidden("this department user has no department")
    st = wall.state(department_id=dept)
    if dept is not None:  # a department sees its own cases and nothing of the others
        st["ticker"] = []
        st.pop("ranking", None)
    st["video"] = security.video_settings()
    return json_response(st)


@bp.post("/console/api/photos")
def console_photo():
    if security.session_user() is None:
        raise errors.Unauthorized("sign in to the console")
    f = request.files.get("photo")
    if f is None:
        raise errors.BadInput("send the image as the multipart field 'photo'")
    return json_response({"url": uploads.save_photo(f.read(uploads.MAX_PHOTO_BYTES + 1))}, status=201)


LOGIN_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>登录 · 指挥大厅控制台</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="stylesheet" href="/assets/login.css"></head>
<body class="login"><form method="post" action="/console/login" class="login-box">
<h1>数字化城管 · 值班控制台</h1><p class="sub">Duty console — sign in</p>{error}
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label>用户名 Username<input name="username" autocomplete="username" required autofocus></label>
<label>密码 Password<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">登录 Sign in</button></form></body></html>"""


def _login_page(error: str = "", status: int = 200) -> Response:
    nxt = security._safe_next(request.values.get("next"))
    html = LOGIN_PAGE.format(error=f'<p class="error">{escape(error)}</p>' if error else "",
                             csrf=escape(security.csrf_token()), next=escape(nxt))
    resp = Response(html, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/console/login")
def login_form():
    return _login_page()


@bp.post("/console/login")
def login_submit():
    try:
        security.login(request.form.get("username", ""), request.form.get("password", ""))
    except errors.ServiceError as exc:
        return _login_page(exc.message, exc.status)
    return redirect(security._safe_next(request.form.get("next")))


@bp.post("/console/logout")
def logout():
    security.logout()
    return redirect("/console/login")


@bp.route("/api/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def api_not_found(path: str):
    """Unknown API paths answer the JSON 404 (the wall's catch-all page must not swallow them)."""
    raise errors.NotFound(f"no API endpoint /api/{path}")

