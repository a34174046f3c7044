"""Unit grids (单元网格), responsibility rules and inspectors' duty grids (责任网格).

A unit grid code (单元网格标识码) has 15 digits: 6 district (县级行政区划, GB/T 2260) +
3 street (街道/镇/乡) + 3 community (社区/村) + 3 sequence (单元网格顺序码).

:class:`GridIndex` finds the unit grid that holds a point (STRtree, no Python loop over grids);
:class:`Responsibilities` suggests the responsible department for a grid and a case class;
:class:`DutyMap` tells which inspectors (监督员) patrol a grid.

Coordinates are WGS-84.  Functions take ``(lat, lon)``; GeoJSON and shapely store ``(lon, lat)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from backend.domain.coords import check_lat_lon

GRID_CODE_LENGTH = 15

# WGS-84 ellipsoid, for the local projection used by area_m2.
_WGS84_A = 6378137.0
_WGS84_E2 = 0.00669437999014

_CLASS_KEY = re.compile(r"^[CE][0-9]{4}$")
_CLASS_PREFIX = re.compile(r"^([CE][0-9]{0,4})?$")


class GridError(ValueError):
    """A bad grid code, grid geometry, grid file, rule or duty grid."""


# --- grid codes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridCode:
    """The parts of a 15-digit unit grid code (单元网格标识码)."""

    district: str  # 6 digits, 县级行政区划代码
    street: str  # 3 digits, 街道(镇、乡)代码
    community: str  # 3 digits, 社区(村)代码
    seq: str  # 3 digits, 单元网格顺序码

    @property
    def code(self) -> str:
        """The full 15-digit code."""
        return self.district + self.street + self.community + self.seq

    @property
    def street_code(self) -> str:
        """9 digits: district + street (街道代码)."""
        return self.district + self.street

    @property
    def community_code(self) -> str:
        """12 digits: district + street + community (社区代码, as in 统计用区划代码)."""
        return self.district + self.street + self.community

    def __str__(self) -> str:
        return self.code


def parse_grid_code(code: str) -> GridCode:
    """Split a 15-digit unit grid code; GridError with a clear message if it is not one."""
    if not isinstance(code, str):
        raise GridError(f"grid code must be a string of 15 digits, got {type(code).__name__} {code!r}")
    text = code.strip()
    if not (text.isascii() and text.isdigit()):
        raise GridError(f"grid code must contain digits only, got {code!r}")
    if len(text) != GRID_CODE_LENGTH:
        raise GridError(
            f"grid code must have 15 digits (6 district + 3 street + 3 community + 3 sequence), "
            f"got {len(text)}: {code!r}"
        )
    return GridCode(text[:6], text[6:9], text[9:12], text[12:])


# --- unit grids ------------------------------------------------------------------------------


def area_m2(geometry: BaseGeometry) -> float:
    """Area in m² of a lon/lat polygon, projected equirectangularly around its centroid.

    Uses the WGS-84 meridian and prime-vertical radii at the centroid latitude; accurate to a
    fraction of a percent over a district, which is all a unit grid needs.
    """
    if geometry.is_empty:
        return 0.0
    centroid = geometry.centroid
    lon0, lat0 = centroid.x, centroid.y
    phi = math.radians(lat0)
    w = 1.0 - _WGS84_E2 * math.sin(phi) ** 2
    meridian = _WGS84_A * (1.0 - _WGS84_E2) / (w * math.sqrt(w))
    prime_vertical = _WGS84_A / math.sqrt(w)
    metres_per_deg_lat = math.radians(meridian)
    metres_per_deg_lon = math.radians(prime_vertical * math.cos(phi))

    def project(xy: np.ndarray) -> np.ndarray:
        out = np.empty_like(xy)
        out[:, 0] = (xy[:, 0] - lon0) * metres_per_deg_lon
        out[:, 1] = (xy[:, 1] - lat0) * metres_per_deg_lat
        return out

    return float(shapely.transform(geometry, project).area)


def _check_polygon(geometry: Any, where: str) -> Polygon | MultiPolygon:
    if not isinstance(geometry, (Polygon, MultiPolygon)):
        kind = getattr(geometry, "geom_type", type(geometry).__name__)
        raise GridError(f"{where}: geometry must be a Polygon or MultiPolygon, got {kind}")
    if geometry.is_empty:
        raise GridError(f"{where}: geometry is empty")
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    if not all(math.isfinite(v) for v in geometry.bounds):
        raise GridError(f"{where}: geometry has non-finite coordinates")
    if min_lon < -180 or max_lon > 180 or min_lat < -90 or max_lat > 90:
        raise GridError(
            f"{where}: coordinates out of range (GeoJSON order is [lon, lat]); "
            f"bounds are {geometry.bounds}"
        )
    if not geometry.is_valid:
        raise GridError(f"{where}: invalid polygon ({explain_validity(geometry)})")
    return geometry


@dataclass(frozen=True)
class UnitGrid:
    """A unit grid (单元网格): code, name, WGS-84 polygon (lon, lat) and area in m²."""

    code: str
    name: str
    geometry: Polygon | MultiPolygon
    area_m2: float

    @classmethod
    def build(cls, code: str, geometry: BaseGeometry, name: str = "") -> UnitGrid:
        """Validate the code and polygon and compute the area."""
        parsed = parse_grid_code(code)
        polygon = _check_polygon(geometry, f"grid {parsed.code}")
        if not isinstance(name, str):
            raise GridError(f"grid {parsed.code}: name must be a string, got {name!r}")
        return cls(parsed.code, name, polygon, area_m2(polygon))

    @property
    def district_code(self) -> str:
        """6-digit district code (县级行政区划)."""
        return self.code[:6]

    @property
    def street_code(self) -> str:
        """9-digit street code (街道)."""
        return self.code[:9]

    @property
    def community_code(self) -> str:
        """12-digit community code (社区)."""
        return self.code[:12]

    @property
    def center(self) -> tuple[float, float]:
        """A point inside the grid as (lat, lon), e.g. for a label."""
        point = self.geometry.representative_point()
        return point.y, point.x

    def to_feature(self) -> dict[str, Any]:
        """A GeoJSON Feature (coordinates [lon, lat])."""
        return {
            "type": "Feature",
            "properties": {"grid_code": self.code, "name": self.name, "area_m2": round(self.area_m2, 1)},
            "geometry": mapping(self.geometry),
        }


class Bounds(NamedTuple):
    """A lat/lon bounding box."""

    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float


class GridIndex:
    """All unit grids of a city with a spatial index for point lookup (点 -> 单元网格)."""

    def __init__(self, grids: Iterable[UnitGrid]) -> None:
        self._grids: list[UnitGrid] = []
        self._by_code: dict[str, UnitGrid] = {}
        for grid in grids:
            if not isinstance(grid, UnitGrid):
                raise GridError(f"expected UnitGrid, got {type(grid).__name__}")
            if grid.code in self._by_code:
                raise GridError(f"duplicate grid code {grid.code}")
            self._grids.append(grid)
            self._by_code[grid.code] = grid
        self._tree = shapely.STRtree([g.geometry for g in self._grids])

    @classmethod
    def from_geojson(cls, feature_collection: Mapping[str, Any]) -> GridIndex:
        """Build from a GeoJSON FeatureCollection whose features carry ``grid_code`` (and
        optionally ``name``) properties and Polygon/MultiPolygon geometries."""
        if not isinstance(feature_collection, Mapping):
            raise GridError("grid data must be a GeoJSON FeatureCollection object")
        kind = feature_collection.get("type")
        if kind != "FeatureCollection":
            raise GridError(f"grid data must be a GeoJSON FeatureCollection, got type {kind!r}")
        features = feature_collection.get("features")
        if not isinstance(features, list):
            raise GridError("FeatureCollection has no 'features' list")
        grids: list[UnitGrid] = []
        seen: dict[str, int] = {}
        for index, feature in enumerate(features):
            where = f"feature #{index}"
            if not isinstance(feature, Mapping):
                raise GridError(f"{where}: must be a GeoJSON Feature object")
            properties = feature.get("properties") or {}
            if not isinstance(properties, Mapping):
                raise GridError(f"{where}: properties must be an object")
            if "grid_code" not in properties:
                raise GridError(f"{where}: properties.grid_code is required")
            try:
                code = parse_grid_code(properties["grid_code"]).code
            except GridError as exc:
                raise GridError(f"{where}: {exc}") from None
            where = f"feature #{index} (grid {code})"
            if code in seen:
                raise GridError(f"{where}: duplicate grid code, first used by feature #{seen[code]}")
            seen[code] = index
            name = properties.get("name")
            if name is None:
                name = ""
            if not isinstance(name, str):
                raise GridError(f"{where}: name must be a string, got {name!r}")
            raw_geometry = feature.get("geometry")
            if not isinstance(raw_geometry, Mapping):
                raise GridError(f"{where}: geometry is missing")
            if raw_geometry.get("type") not in ("Polygon", "MultiPolygon"):
                raise GridError(
                    f"{where}: geometry must be a Polygon or MultiPolygon, got {raw_geometry.get('type')!r}"
                )
            try:
                geometry = shape(raw_geometry)
            except Exception as exc:  # shapely raises several types for malformed coordinates
                raise GridError(f"{where}: cannot read geometry coordinates ({exc})") from None
            polygon = _check_polygon(geometry, where)
            grids.append(UnitGrid(code, name, polygon, area_m2(polygon)))
        return cls(grids)

    def to_geojson(self) -> dict[str, Any]:
        """A GeoJSON FeatureCollection of all grids."""
        return {"type": "FeatureCollection", "features": [g.to_feature() for g in self._grids]}

    def __len__(self) -> int:
        return len(self._grids)

    def __iter__(self) -> Iterator[UnitGrid]:
        return iter(self._grids)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code.strip() in self._by_code

    def codes(self) -> list[str]:
        """All grid codes, in input order."""
        return [g.code for g in self._grids]

    def get(self, code: str) -> UnitGrid:
        """The grid with this code; GridError if the code is malformed or unknown."""
        parsed = parse_grid_code(code)
        grid = self._by_code.get(parsed.code)
        if grid is None:
            raise GridError(f"unknown grid code {parsed.code}")
        return grid

    @property
    def bounds(self) -> Bounds | None:
        """Bounding box of all grids, or None when the index is empty."""
        if not self._grids:
            return None
        min_lon, min_lat, max_lon, max_lat = shapely.total_bounds([g.geometry for g in self._grids])
        return Bounds(float(min_lat), float(min_lon), float(max_lat), float(max_lon))

    def locate(self, lat: float, lon: float) -> UnitGrid | None:
        """The unit grid holding the point, or None outside all grids.

        A point on a border shared by two grids belongs to the one listed first.
        """
        lat, lon = check_lat_lon(lat, lon)
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        return self._grids[int(hits.min())]

    def locate_many(self, points: Iterable[tuple[float, float]]) -> list[UnitGrid | None]:
        """:meth:`locate` for many (lat, lon) points at once (one index query for all)."""
        checked = [check_lat_lon(lat, lon) for lat, lon in points]
        if not checked:
            return []
        coords = np.array([(lon, lat) for lat, lon in checked], dtype=float)
        input_idx, tree_idx = self._tree.query(shapely.points(coords), predicate="intersects")
        first = np.full(len(checked), len(self._grids), dtype=np.int64)
        np.minimum.at(first, input_idx, tree_idx)
        return [self._grids[i] if i < len(self._grids) else None for i in first.tolist()]

    def contains(self, lat: float, lon: float) -> bool:
        """True if the point lies inside (or on the border of) any grid."""
        return self.locate(lat, lon) is not None


# --- responsibility: unit grid x case class -> department ------------------------------------


@dataclass(frozen=True)
class ResponsibilityRule:
    """Department ``department_id`` handles classes starting with ``class_prefix`` in grids whose
    code starts with ``grid_prefix`` (a district, street, community or grid code; "" = everywhere).

    ``class_prefix`` is "" (all classes), a kind ("E"), a major ("E01") or a class ("C0101").
    """

    department_id: int
    grid_prefix: str = ""
    class_prefix: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.department_id, bool) or not isinstance(self.department_id, int):
            raise GridError(f"department_id must be an integer, got {self.department_id!r}")
        if not isinstance(self.grid_prefix, str) or not (
            self.grid_prefix == "" or (self.grid_prefix.isascii() and self.grid_prefix.isdigit())
        ):
            raise GridError(f"grid_prefix must be digits (or ''), got {self.grid_prefix!r}")
        if len(self.grid_prefix) > GRID_CODE_LENGTH:
            raise GridError(f"grid_prefix is longer than a grid code: {self.grid_prefix!r}")
        if not isinstance(self.class_prefix, str):
            raise GridError(f"class_prefix must be a string, got {self.class_prefix!r}")
        normalised = self.class_prefix.strip().upper()
        if not _CLASS_PREFIX.match(normalised):
            raise GridError(
                f"class_prefix must be '' or C/E followed by up to 4 digits (e.g. 'E01', 'C0101'), "
                f"got {self.class_prefix!r}"
            )
        object.__setattr__(self, "class_prefix", normalised)


def _check_class_key(class_key: str) -> str:
    if not isinstance(class_key, str) or not _CLASS_KEY.match(class_key.strip().upper()):
        raise GridError(f"class key must be C or E followed by 4 digits (e.g. 'E0102'), got {class_key!r}")
    return class_key.strip().upper()


class Responsibilities:
    """Suggests the responsible department (责任部门) for a unit grid and a case class."""

    def __init__(self, rules: Iterable[ResponsibilityRule]) -> None:
        self._rules: list[ResponsibilityRule] = []
        # grid prefix -> rules, most specific class prefix first, then rule order.
        self._by_grid_prefix: dict[str, list[ResponsibilityRule]] = {}
        for rule in rules:
            if not isinstance(rule, ResponsibilityRule):
                raise GridError(f"expected ResponsibilityRule, got {type(rule).__name__}")
            self._rules.append(rule)
            self._by_grid_prefix.setdefault(rule.grid_prefix, []).append(rule)
        for bucket in self._by_grid_prefix.values():
            bucket.sort(key=lambda r: -len(r.class_prefix))  # stable: keeps rule order on ties
        self._prefix_lengths = sorted({len(p) for p in self._by_grid_prefix}, reverse=True)

    @property
    def rules(self) -> list[ResponsibilityRule]:
        return list(self._rules)

    def _matches(self, grid_code: str, class_key: str) -> Iterator[ResponsibilityRule]:
        code = parse_grid_code(grid_code).code
        key = _check_class_key(class_key)
        for length in self._prefix_lengths:
            for rule in self._by_grid_prefix.get(code[:length], ()):
                if key.startswith(rule.class_prefix):
                    yield rule

    def suggest(self, grid_code: str, class_key: str) -> int | None:
        """The department of the most specific matching rule (longest grid prefix, then longest
        class prefix, then first listed), or None if no rule matches."""
        for rule in self._matches(grid_code, class_key):
            return rule.department_id
        return None

    def departments_for(self, grid_code: str, class_key: str) -> list[int]:
        """All matching departments, most specific first, without repeats."""
        result: list[int] = []
        for rule in self._matches(grid_code, class_key):
            if rule.department_id not in result:
                result.append(rule.department_id)
        return result


# --- duty grids: an inspector's set of unit grids --------------------------------------------


@dataclass(frozen=True)
class ResponsibilityGrid:
    """A 责任网格 (监督网格): the unit grids one inspector (监督员) patrols."""

    code: str
    name: str
    inspector: str
    grid_codes: frozenset[str]

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code.strip():
            raise GridError(f"responsibility grid code must be a non-empty string, got {self.code!r}")
        where = f"responsibility grid {self.code}"
        if not isinstance(self.name, str):
            raise GridError(f"{where}: name must be a string")
        if not isinstance(self.inspector, str) or not self.inspector.strip():
            raise GridError(f"{where}: inspector must be a non-empty string")
        if isinstance(self.grid_codes, str) or not isinstance(self.grid_codes, Iterable):
            raise GridError(f"{where}: grid_codes must be a set of 15-digit codes")
        try:
            codes = frozenset(parse_grid_code(c).code for c in self.grid_codes)
        except GridError as exc:
            raise GridError(f"{where}: {exc}") from None
        if not codes:
            raise GridError(f"{where}: has no unit grids")
        object.__setattr__(self, "grid_codes", codes)


class DutyMap:
    """Which inspectors patrol which unit grids."""

    def __init__(self, duty_grids: Iterable[ResponsibilityGrid]) -> None:
        self._duty_grids: dict[str, ResponsibilityGrid] = {}
        self._by_unit: dict[str, list[ResponsibilityGrid]] = {}
        self._by_inspector: dict[str, set[str]] = {}
        for duty in duty_grids:
            if not isinstance(duty, ResponsibilityGrid):
                raise GridError(f"expected ResponsibilityGrid, got {type(duty).__name__}")
            if duty.code in self._duty_grids:
                raise GridError(f"duplicate responsibility grid code {duty.code}")
            self._duty_grids[duty.code] = duty
            for unit in sorted(duty.grid_codes):
                self._by_unit.setdefault(unit, []).append(duty)
            self._by_inspector.setdefault(duty.inspector, set()).update(duty.grid_codes)

    def __len__(self) -> int:
        return len(self._duty_grids)

    def __iter__(self) -> Iterator[ResponsibilityGrid]:
        return iter(self._duty_grids.values())

    def get(self, code: str) -> ResponsibilityGrid:
        try:
            return self._duty_grids[code]
        except (KeyError, TypeError):
            raise GridError(f"unknown responsibility grid {code!r}") from None

    def duty_grids_for(self, grid_code: str) -> list[ResponsibilityGrid]:
        """The responsibility grids that include a unit grid, in input order."""
        return list(self._by_unit.get(parse_grid_code(grid_code).code, ()))

    def inspectors_for(self, grid_code: str) -> list[str]:
        """Inspectors who patrol a unit grid (in input order, no repeats); [] if none."""
        result: list[str] = []
        for duty in self.duty_grids_for(grid_code):
            if duty.inspector not in result:
                result.append(duty.inspector)
        return result

    def grids_of(self, inspector: str) -> frozenset[str]:
        """All unit grid codes an inspector patrols; empty for an unknown inspector."""
        return frozenset(self._by_inspector.get(inspector, ()))
