"""Base data (基础数据): catalog, departments, grids (GeoJSON), duty grids, components, map layers."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from backend.api.common import current_actor
from backend.services import errors, reference
from backend.services.context import current

bp = Blueprint("reference", __name__)


def _float(name: str) -> float:
    raw = request.args.get(name)
    if raw is None:
        raise errors.BadInput(f"query parameter '{name}' is required")
    try:
        return float(raw)
    except ValueError as exc:
        raise errors.BadInput(f"'{name}' must be a number", {"field": name}) from exc


@bp.get("/catalog")
def catalog():
    return jsonify(current().catalog.to_dict())


@bp.get("/catalog/<class_code>")
def catalog_class(class_code: str):
    from backend.domain.catalog import UnknownClass

    try:
        cls = current().catalog.resolve(class_code, request.args.get("kind"))
    except UnknownClass as exc:
        raise errors.NotFound(str(exc)) from exc
    return jsonify({"class_code": cls.key, "code": cls.code, "kind": cls.kind, "name": cls.name,
                    "major": cls.major, "dept_type": cls.dept_type, "urgency": cls.urgency,
                    "limits": {k: {"value": v.value, "clock": v.clock} for k, v in cls.limits.items()}})


@bp.get("/departments")
def departments():
    return jsonify({"departments": reference.departments()})


@bp.get("/grids")
def grids():
    return jsonify(reference.grids_geojson(request.args.get("street_code"), request.args.get("community_code")))


@bp.get("/grids/locate")
def locate():
    return jsonify(reference.locate(_float("lat"), _float("lon")))


@bp.get("/grids/<code>")
def grid(code: str):
    return jsonify(reference.grid(code))


@bp.get("/streets")
def streets():
    return jsonify(reference.areas("streets"))


@bp.get("/communities")
def communities():
    return jsonify(reference.areas("communities"))


@bp.get("/map/<name>")
def map_layer(name: str):
    return jsonify(reference.map_layer(name))


@bp.get("/duty-grids")
def duty_grids():
    current_actor()
    return jsonify({"duty_grids": reference.duty_grids()})


@bp.get("/components")
def components():
    bbox = None
    if request.args.get("bbox"):
        try:
            parts = [float(x) for x in request.args["bbox"].split(",")]
        except ValueError as exc:
            raise errors.BadInput("'bbox' must be west,south,east,north") from exc
        if len(parts) != 4:
            raise errors.BadInput("'bbox' must be west,south,east,north")
        bbox = tuple(parts)
    try:
        limit = min(20000, int(request.args.get("limit", 5000)))
    except ValueError as exc:
        raise errors.BadInput("'limit' must be an integer") from exc
    return jsonify({"components": reference.components(bbox, request.args.get("class_code"),
                                                       request.args.get("grid_code"), limit)})
