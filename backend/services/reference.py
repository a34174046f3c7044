"""Reads of the city's base data (基础数据): catalog, departments, grids, duty grids, components, map layers."""
from __future__ import annotations

import json

from sqlalchemy import select

from backend.services import errors
from backend.services.context import current
from backend.store import models as m


def departments() -> list[dict]:
    return sorted(current().departments.values(), key=lambda d: d["id"])


def grids_geojson(street_code: str | None = None, community_code: str | None = None) -> dict:
    t = m.UnitGrid.__table__
    q = select(t)
    if street_code:
        q = q.where(t.c.street_code == street_code)
    if community_code:
        q = q.where(t.c.community_code == community_code)
    with current().reader.connect() as conn:
        rows = conn.execute(q.order_by(t.c.code)).all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": r.code, "geometry": json.loads(r.geometry),
         "properties": {"grid_code": r.code, "name": r.name, "street_code": r.street_code,
                        "community_code": r.community_code, "area_m2": round(r.area_m2, 1)}} for r in rows]}


def grid(code: str) -> dict:
    t = m.UnitGrid.__table__
    with current().reader.connect() as conn:
        r = conn.execute(select(t).where(t.c.code == code)).first()
    if r is None:
        raise errors.NotFound(f"unit grid {code!r} does not exist")
    return {"type": "Feature", "id": r.code, "geometry": json.loads(r.geometry),
            "properties": {"grid_code": r.code, "name": r.name, "street_code": r.street_code,
                           "community_code": r.community_code, "area_m2": round(r.area_m2, 1)}}


def locate(lat: float, lon: float) -> dict:
    g = current().grid_index.locate(lat, lon)
    if g is None:
        raise errors.NotFound("no unit grid at this point: it is outside the city", {"lat": lat, "lon": lon})
    return {"grid_code": g.code, "street_code": g.street_code, "community_code": g.community_code,
            "name": g.name}


def areas(kind: str) -> dict:
    """Streets (街道) or communities (社区) as GeoJSON."""
    t = {"streets": m.Street.__table__, "communities": m.Community.__table__}[kind]
    with current().reader.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.code)).all()
    feats = []
    for r in rows:
        props = {"code": r.code, "name": r.name}
        if kind == "communities":
            props["street_code"] = r.street_code
        feats.append({"type": "Feature", "id": r.code, "geometry": json.loads(r.geometry), "properties": props})
    return {"type": "FeatureCollection", "features": feats}


def map_layer(name: str) -> dict:
    t = m.MapLayer.__table__
    with current().reader.connect() as conn:
        r = conn.execute(select(t.c.geojson).where(t.c.name == name)).first()
    if r is None:
        raise errors.NotFound(f"map layer {name!r} does not exist")
    return json.loads(r.geojson)


def duty_grids() -> list[dict]:
    t = m.DutyGrid.__table__
    with current().reader.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.code)).all()
    return [{"code": r.code, "name": r.name, "inspector": r.inspector, "grid_codes": r.grid_codes} for r in rows]


def components(bbox: tuple[float, float, float, float] | None = None, class_code: str | None = None,
               grid_code: str | None = None, limit: int = 5000) -> list[dict]:
    t = m.Component.__table__
    q = select(t)
    if bbox:
        west, south, east, north = bbox
        q = q.where(t.c.lon >= west, t.c.lon <= east, t.c.lat >= south, t.c.lat <= north)
    if class_code:
        q = q.where(t.c.class_code == class_code)
    if grid_code:
        q = q.where(t.c.grid_code == grid_code)
    with current().reader.connect() as conn:
        rows = conn.execute(q.order_by(t.c.code).limit(limit)).all()
    return [{"code": r.code, "class_code": r.class_code, "name": r.name, "lat": r.lat, "lon": r.lon,
             "grid_code": r.grid_code, "status": r.status, "department_id": r.department_id} for r in rows]
