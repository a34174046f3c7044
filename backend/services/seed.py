"""Loading base data into the store (基础数据入库): the demo city, grids from GeoJSON, the admin user."""
from __future__ import annotations

import json
import logging

from sqlalchemy import delete, func, insert, select

from backend.domain.grid import GridIndex
from backend.services import auth
from backend.services.context import current
from backend.store import models as m

log = logging.getLogger(__name__)


def is_seeded() -> bool:
    with current().reader.connect() as conn:
        return conn.execute(select(func.count()).select_from(m.UnitGrid.__table__)).scalar_one() > 0


def import_grids(feature_collection: dict, replace: bool = False) -> int:
    """Import unit grids (单元网格) from GeoJSON (properties: grid_code, name). Validates every feature first."""
    index = GridIndex.from_geojson(feature_collection)  # raises GridError naming the bad feature
    ctx = current()
    t = m.UnitGrid.__table__
    rows = []
    for f in feature_collection["features"]:
        code = f["properties"]["grid_code"]
        g = index.get(code)
        rows.append({"code": code, "name": f["properties"].get("name") or code, "street_code": g.street_code,
                     "community_code": g.community_code, "geometry": json.dumps(f["geometry"]),
                     "area_m2": g.area_m2})
    with ctx.engine.begin() as conn:
        if replace:
            conn.execute(delete(t))
        else:
            existing = set(conn.execute(select(t.c.code)).scalars())
            rows = [r for r in rows if r["code"] not in existing]
        for i in range(0, len(rows), 500):
            conn.execute(insert(t), rows[i:i + 500])
    ctx.reload()
    return len(rows)


def ensure_admin(password: str | None) -> None:
    """The user `admin` exists; CITYWALL_ADMIN_PASSWORD sets its password at every start."""
    ctx = current()
    t = m.User.__table__
    with ctx.reader.connect() as conn:
        exists = conn.execute(select(t.c.id).where(t.c.username == "admin")).first()
    if password:
        auth.create_user("admin", password, "admin", display_name="系统管理员") if not exists \
            else auth.set_password("admin", password)
    elif not exists:
        auth.create_user("admin", "admin" if ctx.config.demo else _random_password(), "admin",
                         display_name="系统管理员")


def _random_password() -> str:
    import secrets

    pw = secrets.token_urlsafe(12)
    log.warning("no CITYWALL_ADMIN_PASSWORD: the user admin got the password %s", pw)
    return pw


def _insert_many(conn, table, rows: list[dict], chunk: int = 1000) -> None:
    for i in range(0, len(rows), chunk):
        conn.execute(insert(table), rows[i:i + chunk])


def seed_city(city) -> dict:
    """Write the demo city (backend.sim.city.City) into an empty store. Returns counts."""
    ctx = current()
    counts: dict[str, int] = {}
    with ctx.engine.begin() as conn:
        _insert_many(conn, (m.Department.__table__), [
            {"code": d["code"], "name": d["name"], "type": d["type"], "street_code": d.get("street_code")}
            for d in city.departments])
        dept_ids = dict(conn.execute(select(m.Department.code, m.Department.id)).all())
        counts["departments"] = len(dept_ids)
        _insert_many(conn, (m.Street.__table__), [
            {"code": s["code"], "name": s["name"], "geometry": json.dumps(s["geometry"])} for s in city.streets])
        _insert_many(conn, (m.Community.__table__), [
            {"code": c["code"], "name": c["name"], "street_code": c["street_code"],
             "geometry": json.dumps(c["geometry"])} for c in city.communities])
        _insert_many(conn, (m.MapLayer.__table__), [
            {"name": "district", "geojson": json.dumps({"type": "FeatureCollection", "features": [
                {"type": "Feature", "geometry": city.district["boundary"],
                 "properties": {"code": city.district["code"], "name": city.district["name"]}}]})},
            {"name": "roads", "geojson": json.dumps(city.roads)},
        ])
        _insert_many(conn, (m.ResponsibilityRule.__table__), [
            {"department_id": dept_ids[r["department_code"]], "grid_prefix": r.get("grid_prefix", ""),
             "class_prefix": r.get("class_prefix", "")} for r in city.responsibilities])
        counts["responsibility_rules"] = len(city.responsibilities)
        _insert_many(conn, (m.DutyGrid.__table__), [
            {"code": d["code"], "name": d["name"], "inspector": d["inspector"], "grid_codes": list(d["grid_codes"])}
            for d in city.duty_grids])
        counts["duty_grids"] = len(city.duty_grids)
        comps = [{"code": c["code"], "class_code": c["class_code"], "name": c["name"], "lat": c["lat"],
                  "lon": c["lon"], "grid_code": c["grid_code"], "status": c.get("status", "完好"),
                  "department_id": dept_ids.get(c.get("dept_code"))} for c in city.components]
        _insert_many(conn, m.Component.__table__, comps)
        counts["components"] = len(comps)
    counts["grids"] = import_grids(city.grids)
    ctx.reload()
    cams = []
    for cam in getattr(city, "cameras", []) or []:
        grid = ctx.grid_index.locate(cam["lat"], cam["lon"])
        cams.append({"name": cam["name"], "lat": cam["lat"], "lon": cam["lon"],
                     "grid_code": grid.code if grid else None, "status": "active",
                     "source": cam.get("source") or f"synthetic:{cam['name']}?size=640x360&fps=25"})
    with ctx.engine.begin() as conn:
        _insert_many(conn, m.Camera.__table__, cams)
    counts["cameras"] = len(cams)
    for u in city.users:
        if u["username"] == "admin":
            continue
        auth.create_user(u["username"], u["password"], u["role"], dept_ids.get(u.get("department_code")),
                         u.get("display_name", ""))
    counts["users"] = len(city.users)
    return counts
