"""A small test city: 16 unit grids near 东单, one department per type, a user for every role."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

from backend.config import Config
from backend.domain.catalog import default_catalog

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LAT0, LON0, STEP = 39.900, 116.400, 0.005
PASSWORD = "pw-test-1"


def grid_code(i: int, j: int) -> str:
    street = "001" if j < 2 else "002"
    community = f"{1 + i // 2:03d}"
    return f"110101{street}{community}{1 + (i % 2) * 4 + j:03d}"


def grids_geojson(n: int = 4) -> dict:
    feats = []
    for i in range(n):          # rows, north to south
        for j in range(n):      # columns, west to east
            west, north = LON0 + j * STEP, LAT0 - i * STEP
            ring = [[west, north], [west + STEP, north], [west + STEP, north - STEP], [west, north - STEP],
                    [west, north]]
            feats.append({"type": "Feature", "properties": {"grid_code": grid_code(i, j), "name": f"G{i}{j}"},
                          "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "features": feats}


def inside(i: int = 1, j: int = 1) -> tuple[float, float]:
    """A point inside grid (i, j)."""
    return LAT0 - i * STEP - STEP / 2, LON0 + j * STEP + STEP / 2


@dataclass
class SmallCity:
    district: dict
    streets: list
    communities: list
    grids: dict
    roads: dict
    departments: list
    responsibilities: list
    duty_grids: list
    users: list
    components: list = field(default_factory=list)
    cameras: list = field(default_factory=list)


def small_city() -> SmallCity:
    cat = default_catalog()
    depts = [{"code": t, "name": f"{name}部门", "type": t} for t, name in cat.dept_types.items()]
    box = {"type": "Polygon", "coordinates": [[[LON0, LAT0], [LON0 + 4 * STEP, LAT0],
                                                [LON0 + 4 * STEP, LAT0 - 4 * STEP], [LON0, LAT0 - 4 * STEP],
                                                [LON0, LAT0]]]}
    users = [{"username": r, "password": PASSWORD, "role": r, "display_name": r}
             for r in ("inspector", "operator", "supervisor", "dispatcher", "leader")]
    users += [{"username": "dept_sanitation", "password": PASSWORD, "role": "department",
               "department_code": "sanitation"},
              {"username": "dept_roads", "password": PASSWORD, "role": "department", "department_code": "roads"}]
    return SmallCity(
        district={"code": "110101", "name": "东城区", "city": "北京市", "boundary": box},
        streets=[{"code": "110101001", "name": "东华门街道", "geometry": box},
                 {"code": "110101002", "name": "景山街道", "geometry": box}],
        communities=[], grids=grids_geojson(), roads={"type": "FeatureCollection", "features": []},
        departments=depts, responsibilities=[{"department_code": "law_enforcement", "grid_prefix": "110101002",
                                              "class_prefix": "E05"}],
        duty_grids=[{"code": "D1", "name": "一号责任网格", "inspector": "inspector",
                     "grid_codes": [f["properties"]["grid_code"] for f in grids_geojson()["features"]]}],
        users=users)


def pg_url_with_schema() -> tuple[str, str]:
    schema = "cw_" + uuid.uuid4().hex[:10]
    eng = create_engine(PG_BASE)
    with eng.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    eng.dispose()
    return f"{PG_BASE}?options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str) -> None:
    eng = create_engine(PG_BASE)
    with eng.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    eng.dispose()


def make_config(data_dir: Path, database_url: str = "", redis_url: str = "", **kw) -> Config:
    return Config(data_dir=data_dir, database_url=database_url, redis_url=redis_url, secret_key="test-secret",
                  **kw)
