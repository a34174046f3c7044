"""Tests for backend.domain.coords: WGS-84 <-> GCJ-02."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.domain.coords import distance_m, gcj02_to_wgs84, out_of_china, wgs84_to_gcj02

# Inside mainland China, away from the edges of the GCJ-02 box.
china_lat = st.floats(min_value=18.0, max_value=53.0, allow_nan=False)
china_lon = st.floats(min_value=74.0, max_value=134.0, allow_nan=False)


def test_known_value_in_beijing() -> None:
    # Published output of the widely used reference implementation (wandergis/coordtransform).
    lat, lon = wgs84_to_gcj02(39.915, 116.404)
    assert lat == pytest.approx(39.91640428150164, abs=1e-9)
    assert lon == pytest.approx(116.41024449916938, abs=1e-9)


def test_offset_in_beijing_is_a_few_hundred_metres() -> None:
    wgs = (39.9087, 116.3975)  # 天安门
    gcj = wgs84_to_gcj02(*wgs)
    assert 300 < distance_m(*wgs, *gcj) < 800
    assert gcj[0] > wgs[0] and gcj[1] > wgs[1]  # shifted north-east there


@settings(max_examples=300, deadline=None)
@given(china_lat, china_lon)
def test_round_trip_from_gcj02(lat: float, lon: float) -> None:
    wgs = gcj02_to_wgs84(lat, lon)
    back = wgs84_to_gcj02(*wgs)
    assert abs(back[0] - lat) < 1e-6 and abs(back[1] - lon) < 1e-6


@settings(max_examples=300, deadline=None)
@given(china_lat, china_lon)
def test_round_trip_from_wgs84(lat: float, lon: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lat, lon))
    assert abs(back[0] - lat) < 1e-6 and abs(back[1] - lon) < 1e-6


def test_inverse_is_exact_not_the_one_step_approximation() -> None:
    gcj = wgs84_to_gcj02(39.915, 116.404)
    lat, lon = gcj02_to_wgs84(*gcj)
    assert abs(lat - 39.915) < 1e-9 and abs(lon - 116.404) < 1e-9


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(51.5074, -0.1278), (35.6895, 139.6917), (0.0, 0.0), (-33.87, 151.21), (60.0, 100.0)],
)
def test_points_outside_china_are_unchanged(lat: float, lon: float) -> None:
    assert out_of_china(lat, lon)
    assert wgs84_to_gcj02(lat, lon) == (lat, lon)
    assert gcj02_to_wgs84(lat, lon) == (lat, lon)


def test_points_in_china_are_not_out_of_china() -> None:
    assert not out_of_china(31.2304, 121.4737)  # 上海
    assert not out_of_china(43.8256, 87.6168)  # 乌鲁木齐


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(math.nan, 116.0), (39.9, math.inf), (116.4, 39.9), (39.9, 200.0), ("north", 116.0), (None, 1.0)],
)
def test_bad_coordinates_are_a_clear_error(lat: object, lon: object) -> None:
    for func in (wgs84_to_gcj02, gcj02_to_wgs84, out_of_china):
        with pytest.raises(ValueError, match="latitude|longitude"):
            func(lat, lon)  # type: ignore[arg-type]


def test_distance_of_one_degree_of_latitude() -> None:
    assert distance_m(39.0, 116.0, 40.0, 116.0) == pytest.approx(111_195, rel=1e-3)
    assert distance_m(39.9, 116.4, 39.9, 116.4) == 0.0
