"""The wall (指挥大厅大屏) at `/`: a read-only Dash page fed by the screen runtime in assets/.

The layout is static: panels with stable DOM ids (`kpi-bar`, `case-map`, `sla-board`, `dept-ranking`,
`trend-chart`, `event-ticker`, `video-wall`). assets/citywall-screen.js loads the state, listens to
Socket.IO and fills the panels: the often-changing ones (board, ticker, ranking, KPI numbers) as plain DOM
text in the empty containers rendered here, the map layers and the trend charts (mounted after the first
frame) through `dash_clientside.set_props`; the cases are drawn by assets/citywall-cases.js. No panel
polls the server.
"""
from __future__ import annotations

import json

from dash import ClientsideFunction, Dash, Input, Output, html
from flask import Flask

from backend.services.context import Context
from dashboard.labels import label
from dashboard.map_layers import case_map, district_bounds, fit_store, register_fit, vehicle_controls

KPIS = [("kpi-reported", "今日上报", "Reported today", "件"),
        ("kpi-registered", "今日立案", "Registered", "件"),
        ("kpi-dispatched", "今日派遣", "Dispatched", "件"),
        ("kpi-closed", "今日结案", "Closed", "件"),
        ("kpi-ontime", "按期结案率", "On-time close rate", ""),
        ("kpi-overdue", "超期未结", "Open overdue", "件"),
        ("kpi-open", "在办案件", "Open cases", "件")]


def panel(panel_id: str, zh: str, en: str, body, extra_class: str = "") -> html.Section:
    return html.Section(id=panel_id, className=f"panel {extra_class}".strip(), children=[
        html.Header(className="panel-head", children=[label(zh, en, className="panel-title")]),
        html.Div(className="panel-body", children=body),
    ])


def kpi_bar() -> html.Div:
    tiles = []
    for kpi_id, zh, en, unit in KPIS:
        tiles.append(html.Div(className=f"kpi {kpi_id}", children=[
            label(zh, en, className="kpi-label"),
            html.Div(className="kpi-value", children=[html.Span("—", id=kpi_id, className="kpi-num"),
                                                       html.Span(unit, className="kpi-unit")]),
        ]))
    return html.Div(id="kpi-bar", className="kpi-bar", children=tiles)


def graph(graph_id: str) -> html.Div:
    """A trend chart's place: the screen runtime mounts a `dcc.Graph` with id `graph_id` in it once the
    wall's first frame is painted, so Plotly (~3.5 MB of JavaScript, about a second to evaluate on the
    wall's PC) is neither loaded nor run before the map, board and KPIs show."""
    return html.Div(id=f"{graph_id}-box", className="trend-box", **{"data-graph": graph_id})


def layout(ctx: Context) -> html.Div:
    city = "东城区"
    header = html.Header(className="wall-head", children=[
        html.Div(className="wall-title", children=[
            label(f"{city}数字化城市管理指挥大厅", "Digital City Management Command Hall", className="wall-title-text"),
        ]),
        html.Div(className="wall-meta", children=[
            html.Span("重连中", id="wall-status", className="status off"),
            html.Span("--:--:--", id="wall-clock", className="wall-clock"),
            html.Button("EN", id="lang-switch", className="lang-switch", n_clicks=0),
        ]),
    ])
    sla = panel("sla-board", "时限预警看板", "Deadline board", [
        html.Div(className="sla-head", children=[
            label("案件编号", "Case", className="sla-num"), label("类别", "Class", className="sla-cls"),
            label("状态", "Status", className="sla-st"), label("用时", "Used", className="sla-bar"),
            label("剩余时间", "Time left", className="sla-cd")]),
        html.Div(id="sla-board-rows", className="sla-rows")])
    ranking = panel("dept-ranking", "专业部门综合评价排名（近30日）", "Departments ranked (30 days)", [
        html.Div(className="rk-head", children=[
            label("#", "#", className="rk-pos"), label("部门", "Department", className="rk-name"),
            label("综合指标值", "Score", className="rk-bar"), label("", "", className="rk-score"),
            label("等级", "Grade", className="rk-grade"), label("按期处置率", "On time", className="rk-ontime")]),
        html.Div(id="dept-ranking-rows", className="rk-rows")])
    trend = panel("trend-chart", "案件趋势", "Trends", [
        html.Div(className="trend-cell", children=[label("今日与昨日分时上报", "Reports per hour", className="trend-sub"),
                                                   graph("trend-hourly")]),
        html.Div(className="trend-cell", children=[label("大类分布（今日/昨日同期）", "By major class",
                                                         className="trend-sub"), graph("trend-major")]),
        html.Div(className="trend-cell", children=[label("今日高发小类 TOP5", "Top 5 subclasses today",
                                                         className="trend-sub"), graph("trend-top5")]),
    ])
    ticker = panel("event-ticker", "实时动态", "Live events",
                   [html.Div(id="event-ticker-list", className="tk-list")], "ticker")
    video = video_panel()
    map_panel = html.Section(id="map-panel", className="panel map-panel", children=[
        fit_store(ctx), case_map(ctx), vehicle_controls(),
        html.Div(id="map-home", hidden=True, **{"data-bounds": json.dumps(district_bounds(ctx))}),
        html.Div(className="map-legend", children=[
            html.Span(className="lg lg-new"), label("待立案", "To register"),
            html.Span(className="lg lg-disp"), label("处置中", "Handling"),
            html.Span(className="lg lg-chk"), label("待核查", "Checking"),
            html.Span(className="lg lg-warn"), label("预警", "80% used"),
            html.Span(className="lg lg-over"), label("超期", "Overdue"),
            html.Span(className="lg lg-veh"), label("车辆", "Vehicles"),
            html.Span(className="lg lg-stale"), label("定位过时", "Stale"),
            html.Span(className="lg lg-cam"), label("视频", "Camera"),
        ]),
    ])
    return html.Div(id="wall-root", className="wall", children=[
        header, kpi_bar(),
        html.Main(className="wall-grid", children=[
            html.Div(className="col col-left", children=[sla, ranking, emergency_panel()]),
            html.Div(className="col col-mid", children=[map_panel, ticker]),
            html.Div(className="col col-right", children=[trend, video]),
        ]),
    ])


VIDEO_LAYOUTS = [(1, "1"), (4, "2×2"), (9, "3×3"), (16, "4×4")]


def video_panel() -> html.Section:
    """The video wall (视频墙): 1, 2×2, 3×3 or 4×4 tiles, each a <video> the screen runtime fills
    (assets/citywall-video.js); the tiles' node is left to it (no Dash children)."""
    buttons = [html.Button(text, className="vw-layout", **{"data-layout": str(n)}) for n, text in VIDEO_LAYOUTS]
    return html.Section(id="video-wall", className="panel", children=[
        html.Header(className="panel-head vw-head", children=[
            label("视频监控", "Video", className="panel-title"),
            html.Span(id="video-wall-note", className="vw-note"),
            html.Div(className="vw-layouts", children=buttons)]),
        html.Div(className="panel-body", children=[html.Div(id="video-wall-tiles", className="video-tiles")]),
    ])


def emergency_panel() -> html.Section:
    """应急指挥 (emergency mode): the incident, units en route, tasks with countdowns, the timeline.
    Hidden until an incident takes the wall; filled by assets/citywall-emergency.js."""
    return html.Section(id="emergency-panel", className="panel emergency-panel", children=[
        html.Header(className="panel-head em-head", children=[
            label("应急指挥", "Emergency command", className="panel-title"),
            html.Span(id="emergency-title", className="em-title")]),
        html.Div(id="emergency-body", className="panel-body em-body"),
    ])


# The wall's state (20,000 cases: ~3 MB of JSON, read by the server in up to a second) is asked for by the
# page's head, before the ~6 MB of Dash, Leaflet and the screen's scripts are loaded and run, so both go
# on at once; assets/citywall-screen.js takes the answer from `window.cwEarlyState`. The map's GeoJSON layer
# (a chunk dash-leaflet loads only once the layout is drawn) is fetched early too; its path is dash-leaflet
# 1.1.3's (pinned): were it to change, the browser tests fail on the preload's 404. So are the layout and the
# callbacks' dependencies, which the Dash renderer asks for only once its 1.6 MB of scripts have run.
EARLY_STATE = """<script>window.cwEarlyState = (function () {
  var tok = new URLSearchParams(location.search).get("token");
  return fetch("/wall/api/state" + (tok ? "?token=" + encodeURIComponent(tok) : ""),
               {credentials: "same-origin", cache: "no-store"})
    .then(function (r) { return r.ok ? r.json() : null; }, function () { return null; });
})();</script>"""

INDEX = """<!DOCTYPE html>
<html lang="zh-CN">
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%favicon%}
        """ + EARLY_STATE + """
        <link rel="preload" href="/_dash-component-suites/dash_leaflet/async-GeoJSON.js" as="script">
        <link rel="preload" href="/_dash-layout" as="fetch" crossorigin>
        <link rel="preload" href="/_dash-dependencies" as="fetch" crossorigin>
        {%css%}
    </head>
    <body>
        {%app_entry%}
        <footer>
            {%config%}
            {%scripts%}
            {%renderer%}
        </footer>
    </body>
</html>"""


def create(server: Flask, ctx: Context, assets_folder: str) -> Dash:
    app = Dash("citywall_wall", server=server, url_base_pathname="/", assets_folder=assets_folder,
               title="数字化城管指挥大厅", update_title=None, serve_locally=True, compress=False,
               suppress_callback_exceptions=True)
    app.index_string = INDEX
    app.layout = layout(ctx)
    register_fit(app)
    app.clientside_callback(ClientsideFunction("citywall", "components"),
                            Output("component-layer", "data"),
                            Input("case-map", "bounds"), Input("case-map", "zoom"), prevent_initial_call=True)
    return app
