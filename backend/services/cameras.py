"""Cameras (视频监控点): the registry, snapshots through the streams service, reports from a camera."""
from __future__ import annotations

import math
import urllib.error
import urllib.request
from datetime import datetime, timezone

from sqlalchemy import insert, select, update

from backend.domain.coords import distance_m
from backend.domain.lifecycle import Actor
from backend.services import cases, errors, uploads
from backend.services.context import current
from backend.store import models as m

CAMERAS = m.Camera.__table__
SOURCE_PREFIXES = ("rtsp://", "rtsps://", "synthetic:", "file:", "/")
MAX_SNAPSHOT = 5 * 1024 * 1024


def _public(row) -> dict:
    return {"id": row.id, "name": row.name, "lat": row.lat, "lon": row.lon, "grid_code": row.grid_code,
            "status": row.status, "kind": "synthetic" if row.source.startswith("synthetic:") else
            ("rtsp" if row.source.lower().startswith(("rtsp://", "rtsps://")) else "file")}


def list_cameras(near: tuple[float, float] | None = None, radius_m: float | None = None) -> list[dict]:
    with current().reader.connect() as conn:
        rows = conn.execute(select(CAMERAS).order_by(CAMERAS.c.id)).all()
    out = [_public(r) for r in rows]
    if near is not None:
        for c in out:
            c["distance_m"] = round(distance_m(near[0], near[1], c["lat"], c["lon"]), 1)
        out = [c for c in out if radius_m is None or c["distance_m"] <= radius_m]
        out.sort(key=lambda c: c["distance_m"])
    return out


def get(camera_id: int) -> dict:
    with current().reader.connect() as conn:
        row = conn.execute(select(CAMERAS).where(CAMERAS.c.id == camera_id)).first()
    if row is None:
        raise errors.NotFound(f"camera {camera_id} does not exist")
    return _public(row)


def _validate(data: dict, partial: bool = False) -> dict:
    allowed = {"name", "lat", "lon", "source", "status"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise errors.BadInput(f"unknown fields: {', '.join(unknown)}", {"unknown": unknown})
    out: dict = {}
    if "name" in data or not partial:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise errors.BadInput("'name' must be a non-empty string of at most 200 characters", {"field": "name"})
        out["name"] = name.strip()
    for key, lo, hi in (("lat", -90, 90), ("lon", -180, 180)):
        if key in data or not partial:
            v = data.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                raise errors.BadInput(f"'{key}' must be a number between {lo} and {hi}", {"field": key})
            out[key] = float(v)
    if "source" in data or not partial:
        src = data.get("source")
        if not isinstance(src, str) or not src.strip().lower().startswith(SOURCE_PREFIXES) or len(src) > 1000:
            raise errors.BadInput("'source' must be an rtsp:// URL, a file path or synthetic:<name>",
                                  {"field": "source"})
        out["source"] = src.strip()
    if "status" in data:
        if data["status"] not in ("active", "disabled"):
            raise errors.BadInput("'status' must be 'active' or 'disabled'", {"field": "status"})
        out["status"] = data["status"]
    return out


def create(data: dict) -> dict:
    v = _validate(data)
    grid = current().grid_index.locate(v["lat"], v["lon"])
    if grid is None:
        raise errors.BadInput("the camera is outside the city's unit grids", code="outside_city")
    values = v | {"grid_code": grid.code, "status": v.get("status", "active"),
                  "created_at": datetime.now(timezone.utc)}
    with current().engine.begin() as conn:
        cid = conn.execute(insert(CAMERAS).values(**values).returning(CAMERAS.c.id)).scalar_one()
    return get(cid)


def patch(camera_id: int, data: dict) -> dict:
    get(camera_id)
    v = _validate(data, partial=True)
    if "lat" in v or "lon" in v:
        cur = get(camera_id)
        grid = current().grid_index.locate(v.get("lat", cur["lat"]), v.get("lon", cur["lon"]))
        if grid is None:
            raise errors.BadInput("the camera is outside the city's unit grids", code="outside_city")
        v["grid_code"] = grid.code
    if v:
        with current().engine.begin() as conn:
            conn.execute(update(CAMERAS).where(CAMERAS.c.id == camera_id).values(**v))
    return get(camera_id)


def snapshot(camera_id: int, token: str | None = None, timeout: float = 8.0) -> bytes:
    """A JPEG of the camera now, from the streams service (which pulls the camera if nobody watches)."""
    get(camera_id)
    ctx = current()
    base = f"http://127.0.0.1:{ctx.config.streams_port}"
    req = urllib.request.Request(f"{base}/streams/v1/cameras/{camera_id}/snapshot.jpg")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read(MAX_SNAPSHOT + 1)
    except urllib.error.HTTPError as exc:
        raise errors.ServiceError(f"the streams service answered {exc.code} for the snapshot",
                                  code="snapshot_failed") from exc
    except OSError as exc:
        err = errors.ServiceError("the streams service is not reachable", {"reason": str(exc)},
                                  code="streams_unavailable")
        err.status = 503
        raise err from exc
    if not data.startswith(b"\xff\xd8") or len(data) > MAX_SNAPSHOT:
        raise errors.ServiceError("the streams service sent no JPEG", code="snapshot_failed")
    return data


def report_from_camera(camera_id: int, data: dict, actor: Actor, token: str | None = None) -> dict:
    """上报 from video surveillance (视频监控): a new case at the camera, its snapshot as the photo."""
    cam = get(camera_id)
    photo = uploads.save_photo(snapshot(camera_id, token))
    body = {"lat": cam["lat"], "lon": cam["lon"], "source": "video",
            "address": data.get("address") or cam["name"], "photos": [photo]}
    body.update({k: data[k] for k in ("class_code", "kind", "description", "urgency") if k in data})
    return cases.create(body, actor)


def attach_snapshot(case_id: int, camera_id: int, actor: Actor, token: str | None = None) -> dict:
    """取证: the camera's picture now, attached to the case as evidence."""
    cam = get(camera_id)
    photo = uploads.save_photo(snapshot(camera_id, token))
    return cases.add_evidence(case_id, photo, actor, note=f"视频截图: {cam['name']}")
