"""The demo city (backend.sim.city): codes, seamless grids, numbering, people, components, roads."""
from __future__ import annotations

import dataclasses
import json
import random
import re
from collections import Counter

import pytest
import shapely
from shapely.geometry import Point, shape

from backend.domain.catalog import default_catalog
from backend.domain.grid import GridIndex, Responsibilities, ResponsibilityRule, area_m2
from backend.sim.city import DEFAULT_SEED, build_city

REAL_STREETS = {
    "110101001": "东华门街道", "110101002": "景山街道", "110101003": "交道口街道", "110101004": "安定门街道",
    "110101005": "北新桥街道", "110101006": "东四街道", "110101007": "朝阳门街道", "110101008": "建国门街道",
    "110101009": "东直门街道", "110101010": "和平里街道", "110101011": "前门街道", "110101012": "崇文门外街道",
    "110101013": "东花市街道", "110101014": "龙潭街道", "110101015": "体育馆路街道", "110101016": "天坛街道",
    "110101017": "永定门外街道",
}
ROLES = {"inspector", "operator", "supervisor", "dispatcher", "department", "leader", "admin"}


@pytest.fixture(scope="module")
def city():
    return build_city()


@pytest.fixture(scope="module")
def grid_shapes(city):
    return {f["properties"]["grid_code"]: shape(f["geometry"]) for f in city.grids["features"]}


def test_district_has_the_real_streets_at_real_coordinates(city):
    assert city.district["code"] == "110101"
    assert city.district["name"] == "东城区" and city.district["city"] == "北京市"
    assert {s["code"]: s["name"] for s in city.streets} == REAL_STREETS
    boundary = shape(city.district["boundary"])
    min_lon, min_lat, max_lon, max_lat = boundary.bounds
    assert 116.37 < min_lon < max_lon < 116.46 and 39.85 <= min_lat < max_lat <= 39.98
    # 和平里 is the north end, 永定门外 the south end of the district
    lat_of = {s["code"]: shape(s["geometry"]).centroid.y for s in city.streets}
    assert max(lat_of, key=lat_of.get) == "110101010"
    assert min(lat_of, key=lat_of.get) == "110101017"
    lat, lon = city.center
    assert boundary.contains(Point(lon, lat))


def test_streets_and_communities_tile_the_district(city):
    district = shape(city.district["boundary"])
    streets = [shape(s["geometry"]) for s in city.streets]
    assert all(s.geom_type == "Polygon" for s in streets)
    assert shapely.union_all(streets).area == pytest.approx(district.area, rel=1e-6)
    assert sum(s.area for s in streets) == pytest.approx(district.area, rel=1e-6)
    for street in city.streets:
        members = [c for c in city.communities if c["street_code"] == street["code"]]
        assert 4 <= len(members) <= 8, street["name"]
        union = shapely.union_all([shape(c["geometry"]) for c in members])
        assert union.area == pytest.approx(shape(street["geometry"]).area, rel=1e-6)


def test_community_codes_and_names(city):
    codes = [c["code"] for c in city.communities]
    assert len(codes) == len(set(codes))
    for community in city.communities:
        assert re.fullmatch(r"\d{12}", community["code"])
        assert community["code"][:9] == community["street_code"]
        assert 1 <= int(community["code"][9:]) <= 199
        assert community["name"].endswith("社区")
        assert shape(community["geometry"]).geom_type == "Polygon"  # one connected area


def test_grid_codes_are_unique_15_digits_matching_their_community(city):
    features = city.grids["features"]
    assert len(features) >= 450
    codes = [f["properties"]["grid_code"] for f in features]
    assert len(set(codes)) == len(codes)
    communities = {c["code"] for c in city.communities}
    for feature in features:
        props = feature["properties"]
        assert re.fullmatch(r"\d{15}", props["grid_code"])
        assert props["grid_code"][:12] == props["community_code"]
        assert props["grid_code"][:9] == props["street_code"]
        assert props["community_code"] in communities
        assert int(props["grid_code"][12:]) >= 1
        assert props["name"]
    assert len(GridIndex.from_geojson(city.grids)) == len(features)


def test_grids_are_ten_thousand_metre_blocks(grid_shapes):
    for code, polygon in grid_shapes.items():
        assert polygon.geom_type == "Polygon" and polygon.is_valid, code
        assert 0.05e6 <= area_m2(polygon) <= 0.15e6, code


def test_grids_cover_the_district_without_gaps_or_overlaps(city, grid_shapes):
    district = shape(city.district["boundary"])
    polygons = list(grid_shapes.values())
    union = shapely.union_all(polygons)
    assert union.area == pytest.approx(district.area, rel=1e-6)
    assert sum(p.area for p in polygons) == pytest.approx(union.area, rel=1e-6)
    tree = shapely.STRtree(polygons)
    left, right = tree.query(polygons, predicate="intersects")
    overlap = sum(polygons[i].intersection(polygons[j]).area for i, j in zip(left, right) if i < j)
    assert overlap < 1e-10  # deg² (about 1 m²): float noise only


def test_grids_are_numbered_west_to_east_then_north_to_south(city, grid_shapes):
    by_community: dict[str, list[str]] = {}
    for code in sorted(grid_shapes):
        by_community.setdefault(code[:12], []).append(code)
    checked_rows = checked_columns = 0
    for codes in by_community.values():
        numbers = [int(c[12:]) for c in codes]
        assert numbers == list(range(1, len(codes) + 1))  # no gaps
        centres = [grid_shapes[c].centroid for c in codes]
        for i in range(len(codes)):
            for j in range(i + 1, len(codes)):
                a, b = centres[i], centres[j]  # a has the smaller number
                if abs(a.y - b.y) > 0.004:  # clearly different rows (> 400 m)
                    assert a.y > b.y, (codes[i], codes[j])
                    checked_rows += 1
                elif abs(a.y - b.y) < 1e-6 and abs(a.x - b.x) > 0.0005:  # the same row
                    assert a.x < b.x, (codes[i], codes[j])
                    checked_columns += 1
    assert checked_rows > 100 and checked_columns > 100


def test_duty_grids_cover_every_grid_once_with_6_to_12_adjacent_grids(city, grid_shapes):
    seen = Counter(code for duty in city.duty_grids for code in duty["grid_codes"])
    assert set(seen) == set(grid_shapes)
    assert max(seen.values()) == 1
    inspectors = {u["username"] for u in city.users if u["role"] == "inspector"}
    assert len({d["inspector"] for d in city.duty_grids}) == len(city.duty_grids)
    for duty in city.duty_grids:
        assert 6 <= len(duty["grid_codes"]) <= 12, duty["code"]
        assert duty["inspector"] in inspectors
        union = shapely.union_all([grid_shapes[c] for c in duty["grid_codes"]])
        assert union.geom_type == "Polygon", duty["code"]
    for grid_code in list(grid_shapes)[::37]:
        owner = city.duty_inspector(grid_code)
        assert any(grid_code in d["grid_codes"] and d["inspector"] == owner for d in city.duty_grids)


def test_departments_cover_every_type_and_every_street(city):
    catalog = default_catalog()
    departments = city.departments
    assert len(departments) >= 14
    codes = [d["code"] for d in departments]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in codes)
    types = {d["type"] for d in departments}
    assert set(catalog.dept_types) <= types
    offices = {d["street_code"]: d for d in departments if d["type"] == "street_office"}
    assert set(offices) == set(REAL_STREETS)
    assert all(d["name"].endswith("街道办事处") for d in offices.values())
    by_code = {d["code"]: d for d in departments}
    assert by_code["sanitation"]["name"] == "东城区环境卫生服务中心"


def test_responsibilities_route_every_class_everywhere(city):
    catalog = default_catalog()
    index = {d["code"]: k for k, d in enumerate(city.departments)}
    rules = Responsibilities([ResponsibilityRule(index[r["department_code"]], r["grid_prefix"], r["class_prefix"])
                              for r in city.responsibilities])
    by_type = {d["type"]: d for d in city.departments if d["street_code"] is None}
    grid_codes = [f["properties"]["grid_code"] for f in city.grids["features"]]
    for grid_code in grid_codes[::23]:
        street_office = next(d for d in city.departments
                             if d["type"] == "street_office" and d["street_code"] == grid_code[:9])
        for case_class in catalog.classes:
            found = rules.suggest(grid_code, case_class.key)
            assert found is not None, (grid_code, case_class.key)
        assert city.departments[rules.suggest(grid_code, "E0504")] is street_office  # 店外经营: 街道
        assert city.departments[rules.suggest(grid_code, "E0505")] is by_type["traffic"]  # 乱停车: 交警
        assert city.departments[rules.suggest(grid_code, "C0118")] is by_type["streetlight"]
    overrides = {r["department_code"] for r in city.responsibilities} - {d["code"] for d in by_type.values()}
    assert {"wangfujing_office", "tiantan_park"} <= overrides


def test_users_exist_for_every_role(city):
    usernames = [u["username"] for u in city.users]
    assert len(set(usernames)) == len(usernames)
    assert {u["role"] for u in city.users} >= ROLES
    for user in city.users:
        assert isinstance(user["password"], str) and len(user["password"]) >= 8
        assert user["display_name"]
    department_users = {u["department_code"]: u for u in city.users if u["role"] == "department"}
    for department in city.departments:
        assert department_users[department["code"]]["username"] == f"dept_{department['code']}"
    assert "dept_sanitation" in usernames
    inspectors = [u for u in city.users if u["role"] == "inspector"]
    assert len(inspectors) == len(city.inspectors) == len(city.duty_grids)


def test_components_have_16_digit_codes_and_lie_in_their_grid(city, grid_shapes):
    catalog = default_catalog()
    components = city.components
    assert len(components) >= 2000
    codes = [c["code"] for c in components]
    assert len(set(codes)) == len(codes)
    departments = {d["code"] for d in city.departments}
    for component in components:
        code = component["code"]
        assert re.fullmatch(r"\d{16}", code)
        assert code[:6] == "110101" and "C" + code[6:10] == component["class_code"]
        case_class = catalog.get(component["class_code"])
        assert case_class.kind == "C" and component["name"] == case_class.name
        assert component["status"] in ("完好", "破损", "丢失")
        assert component["dept_code"] in departments
        assert grid_shapes[component["grid_code"]].covers(Point(component["lon"], component["lat"])), code
    names = Counter(c["name"] for c in components)
    assert len([n for n in names if n.endswith("井盖")]) >= 5
    assert {"路灯", "垃圾箱", "行道树", "交通标志牌", "公交站亭", "公共厕所", "消防设施"} <= set(names)


def test_cameras_are_at_corners_inside_the_district(city):
    district = shape(city.district["boundary"])
    assert len(city.cameras) >= 16
    assert len({c["name"] for c in city.cameras}) == len(city.cameras)
    for camera in city.cameras:
        assert district.contains(Point(camera["lon"], camera["lat"]))
        assert camera["name"].endswith("角")


def test_roads_are_named_and_form_one_connected_network(city):
    names = {f["properties"]["name"] for f in city.roads["features"]}
    for road in ("东长安街", "建国门内大街", "东单北大街", "王府井大街", "朝阳门内大街", "平安大街", "东二环",
                 "崇文门外大街", "天坛路", "永定门内大街", "安定门内大街", "雍和宫大街", "东直门内大街", "两广路",
                 "前门大街", "交道口东大街", "北河沿大街"):
        assert road in names
    kinds = Counter(f["properties"]["kind"] for f in city.roads["features"])
    assert set(kinds) == {"main", "minor"} and kinds["minor"] > kinds["main"]
    graph = city.road_graph()
    assert graph.is_connected()
    north = graph.nearest_node(39.970, 116.415)  # 和平里
    south = graph.nearest_node(39.858, 116.395)  # 永定门外
    path = graph.shortest_path(north, south)
    assert path[0] == north and path[-1] == south
    for a, b in zip(path, path[1:]):
        assert b in graph.neighbours(a)
    straight = Point(graph.nodes[north][::-1]).distance(Point(graph.nodes[south][::-1])) * 111_000 * 0.76
    assert graph.path_length_m(path) >= straight
    with pytest.raises(ValueError):
        graph.shortest_path(north, len(graph.nodes) + 5)


def test_point_helpers(city, grid_shapes):
    rng = random.Random(3)
    for code in list(grid_shapes)[::50]:
        lat, lon = city.random_point_in_grid(code, rng)
        assert grid_shapes[code].covers(Point(lon, lat))
        assert city.grid_at(lat, lon) == code or grid_shapes[city.grid_at(lat, lon)].covers(Point(lon, lat))
        assert city.address(lat, lon).startswith("东城区")
    assert city.grid_at(39.80, 116.20) is None
    with pytest.raises(ValueError):
        city.grid_geometry("110101999999999")


def _as_json(city) -> str:
    data = {f.name: getattr(city, f.name) for f in dataclasses.fields(city)}
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def test_same_seed_same_city_other_seed_other_people(city):
    assert _as_json(build_city(DEFAULT_SEED)) == _as_json(city)
    other = build_city(DEFAULT_SEED + 1)
    def layout(c):  # codes and geometry do not depend on the seed (names do)
        return [(f["properties"]["grid_code"], f["geometry"]) for f in c.grids["features"]]
    assert layout(other) == layout(city)
    assert [u["display_name"] for u in other.users] != [u["display_name"] for u in city.users]
    assert [c["lat"] for c in other.components] != [c["lat"] for c in city.components]


def test_bad_seed_is_refused():
    with pytest.raises(ValueError):
        build_city("seven")  # type: ignore[arg-type]
