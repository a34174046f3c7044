"""Tests for backend.domain.grid: grid codes, point lookup, responsibility and duty grids."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon

from backend.domain.grid import (
    DutyMap,
    GridError,
    GridIndex,
    ResponsibilityGrid,
    ResponsibilityRule,
    Responsibilities,
    UnitGrid,
    area_m2,
    parse_grid_code,
)

BASE_LAT, BASE_LON = 39.90, 116.40
STEP = 0.001  # ~111 m x 85 m at Beijing


def square(lat: float, lon: float, size: float = STEP) -> list[list[float]]:
    """A closed GeoJSON ring [lon, lat] with its south-west corner at (lat, lon)."""
    return [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]


def feature(code: str, ring: list[list[float]], name: str | None = None) -> dict:
    properties: dict = {"grid_code": code}
    if name is not None:
        properties["name"] = name
    return {"type": "Feature", "properties": properties, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def grid_code(n: int) -> str:
    """Synthetic codes: district 110101, street 001, community by hundreds, sequence."""
    return f"110101001{n // 1000 + 1:03d}{n % 1000:03d}"


def lattice(rows: int, cols: int, skip: set[int] = frozenset()) -> dict:
    """rows x cols adjacent squares, north-west first; indices in ``skip`` left out (holes)."""
    features = []
    for r in range(rows):
        for c in range(cols):
            n = r * cols + c
            if n in skip:
                continue
            lat = BASE_LAT - (r + 1) * STEP
            features.append(feature(grid_code(n), square(lat, BASE_LON + c * STEP), f"grid {n}"))
    return {"type": "FeatureCollection", "features": features}


# --- codes ------------------------------------------------------------------------------------


def test_parse_grid_code() -> None:
    code = parse_grid_code("320582110152102")
    assert (code.district, code.street, code.community, code.seq) == ("320582", "110", "152", "102")
    assert code.street_code == "320582110"
    assert code.community_code == "320582110152"
    assert str(code) == "320582110152102"


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("32058211015210", "15 digits"),
        ("3205821101521020", "15 digits"),
        ("", "digits only"),
        ("32058211015210A", "digits only"),
        ("320582 110152102", "digits only"),
        ("３２０５８２１１０１５２１０２", "digits only"),  # full-width digits
        (320582110152102, "string"),
        (None, "string"),
    ],
)
def test_bad_grid_codes(bad: object, fragment: str) -> None:
    with pytest.raises(GridError, match=fragment):
        parse_grid_code(bad)  # type: ignore[arg-type]


# --- area -------------------------------------------------------------------------------------


def test_area_matches_known_degree_lengths() -> None:
    # 1° of longitude at the equator is 111,319 m; 1° of latitude there is 110,574 m.
    equator = Polygon(square(-0.005, -0.005, 0.01)[:-1])
    assert area_m2(equator) == pytest.approx(1113.19 * 1105.74, rel=1e-3)
    # At 60°N: 1° of latitude is ~111,412 m, 1° of longitude ~55,800 m.
    north = Polygon(square(59.995, 10.0, 0.01)[:-1])
    assert area_m2(north) == pytest.approx(1114.12 * 558.0, rel=2e-3)


def test_unit_grid_build_and_parts() -> None:
    grid = UnitGrid.build("110101001002003", Polygon(square(BASE_LAT, BASE_LON)[:-1]), "东华门 3")
    assert grid.street_code == "110101001"
    assert grid.community_code == "110101001002"
    assert grid.district_code == "110101"
    assert 9_000 < grid.area_m2 < 10_000  # 111 m x 85 m
    lat, lon = grid.center
    assert grid.geometry.contains(Point(lon, lat))


# --- index ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index() -> GridIndex:
    return GridIndex.from_geojson(lattice(3, 4))


def test_index_basics(index: GridIndex) -> None:
    assert len(index) == 12
    assert index.codes()[:2] == [grid_code(0), grid_code(1)]
    assert index.get(grid_code(5)).name == "grid 5"
    assert grid_code(5) in index
    bounds = index.bounds
    assert bounds is not None
    assert bounds.max_lat == pytest.approx(BASE_LAT) and bounds.min_lat == pytest.approx(BASE_LAT - 3 * STEP)
    assert bounds.min_lon == pytest.approx(BASE_LON) and bounds.max_lon == pytest.approx(BASE_LON + 4 * STEP)


def test_get_unknown_or_bad_code(index: GridIndex) -> None:
    with pytest.raises(GridError, match="unknown grid"):
        index.get("110101001009999")
    with pytest.raises(GridError, match="15 digits"):
        index.get("1101")


def test_locate_inside_and_outside(index: GridIndex) -> None:
    # centre of row 1, column 2 -> grid 6
    lat = BASE_LAT - 1.5 * STEP
    lon = BASE_LON + 2.5 * STEP
    assert index.locate(lat, lon).code == grid_code(6)
    assert index.contains(lat, lon)
    assert index.locate(BASE_LAT + STEP, lon) is None  # north of everything
    assert not index.contains(BASE_LAT - 1.5 * STEP, BASE_LON - 0.5 * STEP)


def test_locate_on_a_border_and_just_beside_it(index: GridIndex) -> None:
    lat = BASE_LAT - 0.5 * STEP
    border_lon = BASE_LON + STEP  # shared edge of grids 0 and 1
    assert index.locate(lat, border_lon).code == grid_code(0)  # first listed wins, never None
    assert index.locate(lat, border_lon - 1e-9).code == grid_code(0)
    assert index.locate(lat, border_lon + 1e-9).code == grid_code(1)
    outer_edge_lon = BASE_LON + 4 * STEP
    assert index.locate(lat, outer_edge_lon).code == grid_code(3)
    assert index.locate(lat, outer_edge_lon + 1e-9) is None


def test_locate_rejects_bad_coordinates(index: GridIndex) -> None:
    with pytest.raises(ValueError, match="latitude"):
        index.locate(float("nan"), BASE_LON)
    with pytest.raises(ValueError, match="latitude"):
        index.locate(BASE_LON, BASE_LAT + 100)  # swapped and nonsense


def test_locate_many_matches_locate(index: GridIndex) -> None:
    points = [(BASE_LAT - 0.5 * STEP, BASE_LON + 0.5 * STEP), (0.0, 0.0), (BASE_LAT - 2.5 * STEP, BASE_LON + 3.5 * STEP)]
    assert index.locate_many(points) == [index.locate(*p) for p in points]
    assert index.locate_many([]) == []


def test_multipolygon_grid() -> None:
    a = Polygon(square(BASE_LAT, BASE_LON)[:-1])
    b = Polygon(square(BASE_LAT, BASE_LON + 3 * STEP)[:-1])
    index = GridIndex([UnitGrid.build("110101001001001", MultiPolygon([a, b]))])
    assert index.locate(BASE_LAT + 0.5 * STEP, BASE_LON + 3.5 * STEP).code == "110101001001001"
    assert index.locate(BASE_LAT + 0.5 * STEP, BASE_LON + 1.5 * STEP) is None
    assert index.get("110101001001001").area_m2 == pytest.approx(2 * area_m2(a), rel=1e-3)


def test_empty_index() -> None:
    index = GridIndex.from_geojson({"type": "FeatureCollection", "features": []})
    assert len(index) == 0 and index.bounds is None and index.locate(BASE_LAT, BASE_LON) is None


def test_index_agrees_with_brute_force_over_2000_grids() -> None:
    rng = np.random.default_rng(20261126)
    holes = set(rng.choice(2000, size=40, replace=False).tolist())
    index = GridIndex.from_geojson(lattice(40, 51, skip=holes))  # 2,040 cells minus 40 holes
    assert len(index) == 2000
    grids = list(index)
    lats = rng.uniform(BASE_LAT - 41 * STEP, BASE_LAT + STEP, size=1500)
    lons = rng.uniform(BASE_LON - STEP, BASE_LON + 52 * STEP, size=1500)
    points = list(zip(lats.tolist(), lons.tolist()))
    geometries = np.array([g.geometry for g in grids])
    expected = []
    for lat, lon in points:  # brute force: test the point against every grid
        inside = np.flatnonzero(shapely.covers(geometries, Point(lon, lat)))
        expected.append(grids[inside[0]].code if len(inside) else None)
    assert None in expected and len(set(expected)) > 500  # the sample hits holes, outside and many grids
    assert [g.code if g else None for g in (index.locate(lat, lon) for lat, lon in points)] == expected
    assert [g.code if g else None for g in index.locate_many(points)] == expected


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda fc: fc["features"][1]["properties"].pop("grid_code"), "grid_code is required"),
        (lambda fc: fc["features"][1]["properties"].update(grid_code="1101010010010"), "15 digits"),
        (lambda fc: fc["features"][1]["properties"].update(grid_code=grid_code(0)), "duplicate"),
        (lambda fc: fc["features"][1]["properties"].update(name=7), "name"),
        (lambda fc: fc["features"][1].update(geometry={"type": "Point", "coordinates": [116.4, 39.9]}), "Polygon"),
        (lambda fc: fc["features"][1].update(geometry=None), "geometry"),
        (lambda fc: fc["features"][1]["geometry"].update(coordinates=[[[116.4, 39.9], [116.5]]]), "coordinates"),
        (
            lambda fc: fc["features"][1]["geometry"].update(
                coordinates=[[[lat, lon] for lon, lat in fc["features"][1]["geometry"]["coordinates"][0]]]
            ),
            "[lon, lat]",
        ),
        (
            lambda fc: fc["features"][1]["geometry"].update(
                coordinates=[[[116.40, 39.90], [116.41, 39.91], [116.41, 39.90], [116.40, 39.91], [116.40, 39.90]]]
            ),
            "invalid polygon",
        ),
        (lambda fc: fc.update(type="Feature"), "FeatureCollection"),
        (lambda fc: fc.pop("features"), "features"),
    ],
)
def test_bad_geojson_is_refused_clearly(mutate, fragment: str) -> None:
    fc = lattice(1, 3)
    mutate(fc)
    with pytest.raises(GridError) as info:
        GridIndex.from_geojson(fc)
    assert fragment in str(info.value)


def test_errors_name_the_feature() -> None:
    fc = lattice(1, 3)
    fc["features"][2]["geometry"] = {"type": "LineString", "coordinates": [[116.4, 39.9], [116.5, 39.9]]}
    with pytest.raises(GridError, match=r"feature #2 \(grid 110101001001002\)"):
        GridIndex.from_geojson(fc)


def test_geojson_round_trip(index: GridIndex) -> None:
    again = GridIndex.from_geojson(index.to_geojson())
    assert again.codes() == index.codes()
    assert [g.area_m2 for g in again] == pytest.approx([g.area_m2 for g in index])


# --- responsibility -------------------------------------------------------------------------


@pytest.fixture()
def responsibilities() -> Responsibilities:
    return Responsibilities(
        [
            ResponsibilityRule(1),  # everything, everywhere
            ResponsibilityRule(2, "110101", "E01"),  # 市容环境 events in the district
            ResponsibilityRule(3, "110101001"),  # the street handles all else in its area
            ResponsibilityRule(4, "110101001002", "E0102"),  # 暴露垃圾 in one community
            ResponsibilityRule(5, "110101001003", "C01"),
            ResponsibilityRule(6, "110101001003", "C01"),  # same specificity: rule order wins
            ResponsibilityRule(7, "", "C0101"),  # manholes anywhere (class-specific, no grid)
        ]
    )


@pytest.mark.parametrize(
    ("grid", "class_key", "department"),
    [
        ("110101001002005", "E0102", 4),  # community + class beats everything
        ("110101001002005", "E0103", 3),  # street (longer grid prefix) beats district E01
        ("110101002001001", "E0103", 2),  # another street: the district rule
        ("110101002001001", "C0305", 1),  # only the catch-all
        ("110101001003001", "C0102", 5),  # tie broken by rule order
        ("110101001001001", "C0101", 3),  # grid prefix first, then class prefix
        ("120101001001001", "C0101", 7),  # outside the district: class rule beats catch-all
        ("120101001001001", "e0104", 1),
    ],
)
def test_suggest_picks_the_most_specific_rule(
    responsibilities: Responsibilities, grid: str, class_key: str, department: int
) -> None:
    assert responsibilities.suggest(grid, class_key) == department


def test_departments_for_lists_matches_most_specific_first(responsibilities: Responsibilities) -> None:
    assert responsibilities.departments_for("110101001002005", "E0102") == [4, 3, 2, 1]


def test_no_rule_means_no_suggestion() -> None:
    rules = Responsibilities([ResponsibilityRule(9, "310101", "E")])
    assert rules.suggest("110101001001001", "E0102") is None
    assert rules.suggest("310101001001001", "C0102") is None
    assert rules.suggest("310101001001001", "E0102") == 9


def test_suggest_rejects_bad_input(responsibilities: Responsibilities) -> None:
    with pytest.raises(GridError, match="15 digits"):
        responsibilities.suggest("1101", "E0102")
    with pytest.raises(GridError, match="class key"):
        responsibilities.suggest("110101001001001", "0102")


@pytest.mark.parametrize(
    "args",
    [("1",), (True,), (1, "11a"), (1, "1" * 16), (1, "", "X01"), (1, "", "E01234"), (1, "", "01")],
)
def test_bad_rules_are_refused(args: tuple) -> None:
    with pytest.raises(GridError):
        ResponsibilityRule(*args)


# --- duty grids -----------------------------------------------------------------------------


def test_duty_map() -> None:
    duty = DutyMap(
        [
            ResponsibilityGrid("R01", "东华门北", "inspector-a", frozenset({grid_code(0), grid_code(1)})),
            ResponsibilityGrid("R02", "东华门南", "inspector-b", frozenset({grid_code(1), grid_code(2)})),
            ResponsibilityGrid("R03", "王府井", "inspector-a", frozenset({grid_code(3)})),
        ]
    )
    assert duty.inspectors_for(grid_code(1)) == ["inspector-a", "inspector-b"]
    assert duty.inspectors_for(grid_code(2)) == ["inspector-b"]
    assert duty.inspectors_for(grid_code(9)) == []
    assert duty.grids_of("inspector-a") == frozenset({grid_code(0), grid_code(1), grid_code(3)})
    assert duty.grids_of("nobody") == frozenset()
    assert [d.code for d in duty.duty_grids_for(grid_code(1))] == ["R01", "R02"]


def test_duty_grid_validation() -> None:
    with pytest.raises(GridError, match="R01"):
        ResponsibilityGrid("R01", "x", "a", frozenset({"123"}))
    with pytest.raises(GridError, match="set"):
        ResponsibilityGrid("R01", "x", "a", grid_code(0))  # type: ignore[arg-type]
    with pytest.raises(GridError, match="no unit grids"):
        ResponsibilityGrid("R01", "x", "a", frozenset())
    with pytest.raises(GridError, match="inspector"):
        ResponsibilityGrid("R01", "x", "", frozenset({grid_code(0)}))
    one = ResponsibilityGrid("R01", "x", "a", frozenset({grid_code(0)}))
    with pytest.raises(GridError, match="duplicate"):
        DutyMap([one, one])
