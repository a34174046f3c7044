"""Cameras (视频监控点): registry, snapshots, reports from a camera; uploaded photos."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file

from backend.api.common import current_actor, json_body, login_required, path_id
from backend.services import cameras, errors, uploads

bp = Blueprint("cameras", __name__)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else None


@bp.get("/cameras")
def list_cameras():
    near, radius = None, None
    if request.args.get("lat") and request.args.get("lon"):
        try:
            near = (float(request.args["lat"]), float(request.args["lon"]))
            radius = float(request.args["radius_m"]) if request.args.get("radius_m") else None
        except ValueError as exc:
            raise errors.BadInput("'lat', 'lon' and 'radius_m' must be numbers") from exc
    return jsonify({"cameras": cameras.list_cameras(near, radius)})


@bp.get("/cameras/<camera_id>")
def get_camera(camera_id: str):
    return jsonify(cameras.get(path_id(camera_id, "camera")))


@bp.post("/cameras")
@login_required({"admin", "leader"})
def create_camera():
    resp = jsonify(cameras.create(json_body()))
    resp.status_code = 201
    return resp


@bp.patch("/cameras/<camera_id>")
@login_required({"admin", "leader"})
def patch_camera(camera_id: str):
    return jsonify(cameras.patch(path_id(camera_id, "camera"), json_body()))


@bp.get("/cameras/<camera_id>/snapshot.jpg")
def snapshot(camera_id: str):
    current_actor()
    data = cameras.snapshot(path_id(camera_id, "camera"), _bearer())
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


@bp.post("/cameras/<camera_id>/report")
def report(camera_id: str):
    actor = current_actor()
    case = cameras.report_from_camera(path_id(camera_id, "camera"), json_body(), actor, _bearer())
    resp = jsonify(case)
    resp.status_code = 201
    return resp


@bp.get("/files/<name>")
def uploaded_file(name: str):
    """A stored photo: for a bearer token, or for a signed-in console session (so the console can show it)."""
    if not request.headers.get("Authorization"):
        from dashboard.security import session_user

        if session_user() is None:
            raise errors.Unauthorized("sign in first", code="no_token")
    else:
        current_actor()
    path, mime = uploads.photo_path(name)
    resp = send_file(path, mimetype=mime, max_age=3600)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'"
    return resp


@bp.post("/cases/<case_id>/evidence")
def case_evidence(case_id: str):
    """Attach a camera snapshot to a case as evidence: {"camera_id": N}."""
    actor = current_actor()
    data = json_body()
    camera_id = data.get("camera_id")
    if isinstance(camera_id, bool) or not isinstance(camera_id, int):
        raise errors.BadInput("'camera_id' must be an integer", {"field": "camera_id"})
    return jsonify(cameras.attach_snapshot(path_id(case_id, "case"), camera_id, actor, _bearer()))
