"""The case map (案件地图) as dash-leaflet components, shared by the wall and the console.

The basemap is offline by default: district boundary, streets, unit grids and roads are GeoJSON
vector layers fetched from `/wall/api/layers/<name>` (display coordinates), no tile is requested.
The open cases are not a Dash layer: assets/citywall-cases.js clusters them straight on the Leaflet
map and redraws only the markers a change touches.
An intranet tile server is added when `tile_url` is configured.
"""
from __future__ import annotations

import dash_leaflet as dl
from dash import Dash, Input, Output, State, dcc

from backend.services.context import Context

EMPTY = {"type": "FeatureCollection", "features": []}
# 北京市东城区 (the demo city); replaced by the district's bounds when it is in the store
DEFAULT_BOUNDS = [[39.855, 116.383], [39.975, 116.445]]


def fn(name: str) -> dict:
    """A JavaScript function of assets/citywall-map.js, by name."""
    return {"variable": f"citywall.map.{name}"}


def district_bounds(ctx: Context) -> list[list[float]]:
    from shapely.geometry import shape

    from backend.services import wall

    try:
        fc = wall.base_layer("district")
        minx, miny, maxx, maxy = shape(fc["features"][0]["geometry"]).bounds
        return [[miny, minx], [maxy, maxx]]
    except Exception:  # no city yet: the demo district's box
        return DEFAULT_BOUNDS


def case_map(ctx: Context, map_id: str = "case-map", layer_prefix: str = "/wall/api/layers") -> dl.Map:
    bounds = district_bounds(ctx)
    children = []
    if ctx.config.tile_url:
        children.append(dl.TileLayer(id=f"{map_id}-tiles", url=ctx.config.tile_url, maxZoom=19, attribution=""))
    children += [
        dl.GeoJSON(id="grid-heat", url=f"{layer_prefix}/grids", style=fn("gridStyle"),
                   hideout={"counts": {}, "max": 1}, interactive=False),
        dl.GeoJSON(id="road-layer", url=f"{layer_prefix}/roads", style=fn("roadStyle"), interactive=False),
        dl.GeoJSON(id="street-layer", url=f"{layer_prefix}/streets", style=fn("streetStyle"), interactive=False),
        dl.GeoJSON(id="district-layer", url=f"{layer_prefix}/district", style=fn("districtStyle"),
                   interactive=False),
        dl.GeoJSON(id="component-layer", data=EMPTY, pointToLayer=fn("componentToLayer")),
        # the open cases are not a Dash layer: assets/citywall-cases.js clusters them on this map and
        # updates only the markers a change touches (20,000 cases re-clustered per update was the wall's cost)
        dl.GeoJSON(id="incident-layer", data=EMPTY, style=fn("incidentStyle"), pointToLayer=fn("incidentToLayer")),
        dl.GeoJSON(id="vehicle-track", data=EMPTY, style=fn("trackStyle"), interactive=False),
        dl.GeoJSON(id="camera-layer", data=EMPTY, pointToLayer=fn("cameraToLayer")),
        # vehicles are drawn by assets/citywall-vehicles.js straight on the map (markers moved in place);
        # the layer keeps its id for scripts that address it
        dl.GeoJSON(id="vehicle-layer", data=EMPTY, pointToLayer=fn("vehicleToLayer")),
    ]
    center = [(bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2]
    # center and zoom are required by dash-leaflet's viewport tracking; the viewport then fits the district
    return dl.Map(id=map_id, children=children, center=center, zoom=12.5, zoomSnap=0.25, zoomControl=False,
                  attributionControl=False, minZoom=11, maxZoom=19, className="cw-map",
                  style={"width": "100%", "height": "100%"})


def vehicle_controls():
    """The vehicle layer's filters (department, type) and the followed vehicle: filled by the screen."""
    from dash import html

    return html.Div(id="vehicle-controls", className="veh-controls")


def fit_store(ctx: Context) -> dcc.Store:
    """The district's bounds, for the map to fit itself to its container once it has loaded."""
    return dcc.Store(id="map-bounds", data=district_bounds(ctx))


def register_fit(app: Dash, map_id: str = "case-map") -> None:
    app.clientside_callback(
        """(n, bounds) => bounds ? {bounds: bounds, transition: "fitBounds", options: {animate: false}}
                                 : window.dash_clientside.no_update""",
        Output(map_id, "viewport"), Input(map_id, "n_loads"), State("map-bounds", "data"))
