"""Coordinate conversion between WGS-84 and GCJ-02 (国测局坐标, "火星坐标").

The system stores WGS-84 (practically equal to CGCS2000 at map precision).  GCJ-02 is used only
to display on, or read input from, Chinese online basemaps (高德, 腾讯), which apply the
GCJ-02 offset of roughly 50-700 m.  Outside mainland China no offset is applied.

The forward transform is the published GCJ-02 formula (Krasovsky ellipsoid constants, origin
shift to 105°E 35°N).  The inverse has no closed form; :func:`gcj02_to_wgs84` solves it by
fixed-point iteration to well below 1e-6 degree.

All functions take and return ``(lat, lon)`` in decimal degrees.
"""

from __future__ import annotations

import math

_A = 6378245.0  # semi-major axis used by GCJ-02 (Krasovsky 1940)
_EE = 0.00669342162296594323  # first eccentricity squared used by GCJ-02
_EARTH_RADIUS_M = 6371008.8  # mean Earth radius, for distance_m

# Bounding box outside of which GCJ-02 leaves coordinates unchanged.
CHINA_MIN_LON, CHINA_MAX_LON = 72.004, 137.8347
CHINA_MIN_LAT, CHINA_MAX_LAT = 0.8293, 55.8271

_INVERSE_TOLERANCE_DEG = 1e-10
_INVERSE_MAX_STEPS = 30


def check_lat_lon(lat: float, lon: float) -> tuple[float, float]:
    """Validate a latitude/longitude pair; ValueError with a clear message if bad."""
    try:
        lat_f, lon_f = float(lat), float(lon)
    except (TypeError, ValueError):
        raise ValueError(f"latitude and longitude must be numbers, got ({lat!r}, {lon!r})") from None
    if not (math.isfinite(lat_f) and math.isfinite(lon_f)):
        raise ValueError(f"latitude and longitude must be finite, got ({lat!r}, {lon!r})")
    if not -90.0 <= lat_f <= 90.0:
        raise ValueError(f"latitude must be within -90..90, got {lat_f} (is (lat, lon) swapped?)")
    if not -180.0 <= lon_f <= 180.0:
        raise ValueError(f"longitude must be within -180..180, got {lon_f}")
    return lat_f, lon_f


def _in_box(lat: float, lon: float) -> bool:
    return CHINA_MIN_LON <= lon <= CHINA_MAX_LON and CHINA_MIN_LAT <= lat <= CHINA_MAX_LAT


def out_of_china(lat: float, lon: float) -> bool:
    """True if the point lies outside the box where GCJ-02 applies an offset."""
    lat, lon = check_lat_lon(lat, lon)
    return not _in_box(lat, lon)


def _offset(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 offset (dlat, dlon) in degrees at a WGS-84 point inside China."""
    x = lon - 105.0
    y = lat - 35.0
    # Shared sine terms of the obfuscation series (in "metres-like" units before scaling).
    wave = (20.0 * math.sin(6.0 * math.pi * x) + 20.0 * math.sin(2.0 * math.pi * x)) * 2.0 / 3.0
    shift_lat = (
        -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
        + wave
        + (20.0 * math.sin(math.pi * y) + 40.0 * math.sin(math.pi * y / 3.0)) * 2.0 / 3.0
        + (160.0 * math.sin(math.pi * y / 12.0) + 320.0 * math.sin(math.pi * y / 30.0)) * 2.0 / 3.0
    )
    shift_lon = (
        300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
        + wave
        + (20.0 * math.sin(math.pi * x) + 40.0 * math.sin(math.pi * x / 3.0)) * 2.0 / 3.0
        + (150.0 * math.sin(math.pi * x / 12.0) + 300.0 * math.sin(math.pi * x / 30.0)) * 2.0 / 3.0
    )
    # Convert the shifts to degrees with the ellipsoid's meridian and parallel radii.
    rad_lat = math.radians(lat)
    w = 1.0 - _EE * math.sin(rad_lat) ** 2
    meridian_radius = _A * (1.0 - _EE) / (w * math.sqrt(w))
    parallel_radius = _A / math.sqrt(w) * math.cos(rad_lat)
    dlat = math.degrees(shift_lat / meridian_radius)
    dlon = math.degrees(shift_lon / parallel_radius)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 -> GCJ-02 (for display on 高德/腾讯 basemaps). Points outside China are unchanged."""
    lat, lon = check_lat_lon(lat, lon)
    if not _in_box(lat, lon):
        return lat, lon
    dlat, dlon = _offset(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 -> WGS-84 (for input taken from 高德/腾讯 maps or SDKs).

    Iterates ``wgs = gcj - offset(wgs)`` until it settles; the result maps back to the given
    GCJ-02 point within ~1e-9 degree.  Points outside China are unchanged.
    """
    lat, lon = check_lat_lon(lat, lon)
    if not _in_box(lat, lon):
        return lat, lon
    wgs_lat, wgs_lon = lat, lon
    for _ in range(_INVERSE_MAX_STEPS):
        if not _in_box(wgs_lat, wgs_lon):
            break  # the guess left the offset zone (only possible right at the box edge)
        dlat, dlon = _offset(wgs_lat, wgs_lon)
        next_lat, next_lon = lat - dlat, lon - dlon
        step = max(abs(next_lat - wgs_lat), abs(next_lon - wgs_lon))
        wgs_lat, wgs_lon = next_lat, next_lon
        if step < _INVERSE_TOLERANCE_DEG:
            break
    return wgs_lat, wgs_lon


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine on a sphere of mean Earth radius)."""
    lat1, lon1 = check_lat_lon(lat1, lon1)
    lat2, lon2 = check_lat_lon(lat2, lon2)
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
