"""The duty console (值班控制台) at `/console/`: login required.

The duty leader (值班长, 派遣员, 领导) clicks a case on the map or in the queue and gets its detail:
timeline, photos, deadline, the department suggested from grid and class. From there: 派遣, 督办,
延期/回退/挂账 审批, 作废, 结案. A department user (专业部门) sees only its own cases and can 签收,
处理反馈 with photos, and apply for 延期, 回退 or 挂账. Every action goes through `cases.apply` as the
session's user (the service checks the role), and reaches every wall through the event stream.
Text from reports is rendered as text (React escapes it); photos are shown only when stored here.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import dash
from dash import ALL, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate
from flask import Flask, has_request_context

from backend.domain import lifecycle
from backend.services import cases, errors
from backend.services.context import Context, current
from backend.services import uploads
from dashboard import security
from dashboard.map_layers import case_map, fit_store, register_fit, vehicle_controls

# Actions the console offers, in display order; the service decides which are allowed now.
CENTRE_ACTIONS = ("register", "dispatch", "supervise", "approve_postpone", "reject_postpone", "approve_return",
                  "reject_return", "approve_suspend", "reject_suspend", "resume", "cancel", "close", "rework")
DEPARTMENT_ACTIONS = ("accept", "feedback", "postpone", "return", "suspend")
DANGER = {"cancel", "reject_postpone", "reject_return", "reject_suspend", "return", "rework"}
FILTERS = [("open", "全部在办"), ("registered", "待派遣"), ("to_register", "待立案"), ("handling", "处置中"),
           ("dispatched", "待签收"), ("pending", "待审批申请"), ("overdue", "已超期"), ("to_close", "待结案")]


def _local(iso: str | None) -> str:
    if not iso:
        return "—"
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t.astimezone(current().calendar.tz).strftime("%m-%d %H:%M:%S")


def _remaining(iso: str | None) -> str:
    if not iso:
        return "—"
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    secs = int((t - datetime.now(timezone.utc)).total_seconds())
    sign = "-" if secs < 0 else ""
    secs = abs(secs)
    return f"{sign}{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def _user_or_none() -> security.SessionUser | None:
    return security.session_user() if has_request_context() else None


def layout():
    user = _user_or_none()
    if user is None:
        return html.Div(id="console-root", className="console", children=[html.A("登录 Sign in", href="/console/login")])
    ctx = current()
    role_zh = lifecycle.ROLES.get(user.actor.role, user.actor.role)
    who = f"{user.display_name} · {role_zh}" + (f" · {user.department_name}" if user.department_name else "")
    filters = FILTERS if not user.is_department else [("open", "本部门在办"), ("dispatched", "待签收"),
                                                      ("handling", "处置中"), ("overdue", "已超期")]
    dept_options = [{"label": d["name"], "value": d["id"]} for d in sorted(ctx.departments.values(),
                                                                            key=lambda d: d["id"])]
    return html.Div(id="console-root", className="console", children=[
        dcc.Store(id="console-refresh", data={"n": 0, "ids": []}),
        dcc.Store(id="console-selected", data=None),
        dcc.Store(id="console-acted", data=0),
        dcc.Store(id="act-photos", data=[]),
        html.Header(className="console-head", children=[
            html.Div("数字化城管 · 值班控制台", className="console-title"),
            html.Div(className="console-user", children=[
                html.Span(who, id="console-user"),
                html.Span("重连中", id="wall-status", className="status off"),
                html.Form(action="/console/logout", method="post", className="logout", children=[
                    dcc.Input(type="hidden", name="csrf", value=security.csrf_token()),
                    html.Button("退出", type="submit", className="btn")]),
            ]),
        ]),
        html.Main(className="console-grid", children=[
            html.Section(className="panel console-map", children=[fit_store(ctx), case_map(ctx),
                                                                          vehicle_controls()]),
            html.Section(className="panel console-queue", children=[
                html.Div(className="queue-head", children=[
                    dcc.Dropdown(id="queue-filter", options=[{"label": zh, "value": v} for v, zh in filters],
                                 value="open", clearable=False, className="queue-filter"),
                    html.Span(id="queue-count", className="queue-count")]),
                html.Div(id="case-queue", className="queue-list")]),
            html.Section(className="panel console-detail", children=[
                html.Div(id="case-detail", className="detail", children=html.Div("在地图或列表中选择案件",
                                                                                 className="muted")),
                html.Div(id="action-form", className="action-form", style={"display": "none"}, children=[
                    dcc.Textarea(id="act-note", placeholder="意见 / 原因 / 处理说明", className="act-note"),
                    html.Div(className="act-row", children=[
                        dcc.Dropdown(id="act-dept", options=dept_options, placeholder="派遣部门（默认建议部门）",
                                     className="act-dept"),
                        dcc.Input(id="act-hours", type="number", min=1, max=720, placeholder="延期小时",
                                  className="act-hours"),
                    ]),
                    dcc.Upload(id="act-upload", multiple=True, accept="image/*", className="act-upload",
                               children=html.Div("上传处置照片（JPEG/PNG，≤5 MB）")),
                    html.Div(id="act-photo-list", className="act-photo-list"),
                    html.Div(id="act-buttons", className="act-buttons"),
                    html.Div(id="act-result", className="act-result", role="status"),
                    html.Div(id="cam-result", className="act-result", role="status"),
                ]),
            ]),
        ]),
    ])


def queue_items(user: security.SessionUser, flt: str) -> tuple[list, int]:
    params: dict = {"status": "open", "per_page": 100, "sort": "deadline_at"}
    if flt == "overdue":
        params["overdue"] = "1"
    elif flt not in ("open", "pending"):
        params["status"] = flt
    if flt == "pending":
        params["per_page"] = 500
    result = cases.list_cases(params, user.actor)
    items = result["items"]
    if flt == "pending":
        items = [c for c in items if c.get("pending")]
    rows = []
    for c in items[:100]:
        cls = "q-row" + (" overdue" if c["overdue"] else "") + (" urgent" if c["urgency"] == "urgent" else "")
        rows.append(html.Button(id={"type": "case-row", "index": c["id"]}, className=cls, n_clicks=0, children=[
            html.Span(c["case_number"], className="q-num"),
            html.Span(c["class_name"], className="q-cls"),
            html.Span(c["status_zh"] + (f" · 申请{lifecycle.PENDING_KINDS.get(c['pending'], '')}"
                                        if c.get("pending") else ""), className="q-st"),
            html.Span(_remaining(c.get("deadline_at")), className="q-dl"),
        ]))
    return rows, (result["total"] if flt != "pending" else len(items))


def photo_view(url: str):
    if uploads.is_local_photo(url):
        return html.A(html.Img(src=url, className="photo"), href=url, target="_blank")
    return html.Span(str(url), className="photo-ref")


def detail_view(case: dict, user: security.SessionUser) -> list:
    ctx = current()
    sugg = ctx.departments.get(case.get("suggested_department_id") or -1)
    pending = case.get("pending")
    pp = case.get("pending_payload") or {}
    rows = [
        html.Div(className="d-title", children=[
            html.Span(case["case_number"], className="d-num"),
            html.Span(case.get("class_name", ""), className="d-cls"),
            html.Span(case.get("status_zh", ""), className="d-status"),
            html.Span("紧急" if case.get("urgency") == "urgent" else "一般", className=f"d-urg {case.get('urgency')}"),
        ]),
        html.Dl(className="d-facts", children=[
            html.Dt("问题描述"), html.Dd(case.get("description") or "—", className="d-desc"),
            html.Dt("地址"), html.Dd(case.get("address") or "—"),
            html.Dt("单元网格"), html.Dd(case.get("grid_code") or "—"),
            html.Dt("来源"), html.Dd(lifecycle.SOURCES.get(case.get("source"), case.get("source"))),
            html.Dt("当前时限"), html.Dd(f"{_local(case.get('deadline_at'))}（剩余 {_remaining(case.get('deadline_at'))}）",
                                        className="d-deadline overdue" if case.get("overdue") else "d-deadline"),
            html.Dt("处置捆绑时限"), html.Dd(_local(case.get("bundle_deadline_at"))),
            html.Dt("建议部门"), html.Dd(sugg["name"] if sugg else "—", id="suggested-dept"),
            html.Dt("处置部门"), html.Dd(case.get("department_name") or "—"),
            html.Dt("督办 / 返工"), html.Dd(f"{case.get('supervise_count', 0)} / {case.get('rework_count', 0)}"),
        ]),
    ]
    if pending:
        text = pp.get("reason") or pp.get("note") or ""
        hours = f"，{pp['hours']} 小时" if pp.get("hours") else ""
        rows.append(html.Div(className="d-pending", children=[
            html.Strong(f"待审批：申请{lifecycle.PENDING_KINDS.get(pending, pending)}{hours}"), html.Span(text)]))
    photos = list(case.get("photos") or [])
    for ev in case.get("timeline", []):
        photos += [p for p in (ev.get("payload") or {}).get("photos", []) if isinstance(p, str)]
    if photos:
        rows.append(html.Div(className="d-photos", children=[photo_view(p) for p in photos[:12]]))
    items = []
    for ev in reversed(case.get("timeline", [])):
        payload = ev.get("payload") or {}
        note = payload.get("note") or payload.get("reason") or payload.get("description") or ""
        dept = ctx.departments.get(payload.get("department_id") or -1)
        items.append(html.Li(className=f"tl-item tl-{ev['action']}", children=[
            html.Span(_local(ev["at"]), className="tl-time"),
            html.Span(ev["action_zh"], className="tl-act"),
            html.Span(ev["actor"], className="tl-actor"),
            html.Span(f"{lifecycle.STATUSES.get(ev['from'], ev['from'] or '')} → "
                      f"{lifecycle.STATUSES.get(ev['to'], ev['to'] or '')}", className="tl-move"),
            html.Span(("→ " + dept["name"]) if dept else "", className="tl-dept"),
            html.Span(str(note), className="tl-note"),
        ]))
    rows.append(html.Ol(items, className="timeline"))
    if case.get("lat") is not None and case.get("lon") is not None:
        if not user.is_department and "dispatch" in (case.get("allowed_actions") or []):
            rows.insert(3, units_view(case))
        rows.insert(3, cameras_view(case))
    return rows


CAMERA_RADIUS_M = 500.0
NEAREST_UNITS = 5


def cameras_view(case: dict) -> html.Div:
    """周边视频: the cameras within CAMERA_RADIUS_M of the case; watch one, attach its picture as evidence
    (取证), or report a new case from it (视频上报, class and the note as description)."""
    from backend.services import cameras

    near = cameras.list_cameras((case["lat"], case["lon"]), CAMERA_RADIUS_M)
    near = [c for c in near if c["status"] == "active"][:8]
    head = html.Div(f"周边视频（{int(CAMERA_RADIUS_M)} 米内 {len(near)} 路）", className="d-sub")
    if not near:
        return html.Div(id="case-cameras", className="d-cameras", children=[head, html.Div("附近没有摄像头",
                                                                                           className="muted")])
    ctx = current()
    classes = [{"label": f"{cl.key} {cl.name}", "value": cl.key} for cl in ctx.catalog.classes]
    items = []
    for c in near:
        items.append(html.Div(className="cam-row", **{"data-camera": str(c["id"])}, children=[
            html.Span(c["name"], className="cam-name"),
            html.Span(f"{c['distance_m']:.0f} 米", className="cam-dist"),
            html.Button("观看", className="btn cam-watch", n_clicks=0,
                        **{"data-watch-camera": str(c["id"]), "data-camera-name": c["name"]}),
            html.Button("截图取证", id={"type": "cam-evidence", "index": c["id"]}, className="btn cam-evidence",
                        n_clicks=0),
            html.Button("视频上报", id={"type": "cam-report", "index": c["id"]}, className="btn cam-report",
                        n_clicks=0),
        ]))
    return html.Div(id="case-cameras", className="d-cameras", children=[
        head, *items,
        html.Div(className="cam-report-class", children=[
            html.Span("视频上报类别", className="muted-label"),
            dcc.Dropdown(id="cam-class", options=classes, value=case.get("class_code"), clearable=False,
                         className="act-dept")]),
    ])


def units_view(case: dict) -> html.Div:
    """就近调度: the nearest available units to the case, with straight distance and ETA."""
    from backend.services import gps

    try:
        units = gps.nearest(case["lat"], case["lon"], available=True, limit=NEAREST_UNITS)
    except errors.ServiceError as exc:
        return html.Div(exc.message, className="error")
    except Exception:  # the position store is down: dispatching still works without it
        return html.Div("定位服务暂不可用", className="muted")
    head = html.Div(f"就近可派单位（{len(units)}）", className="d-sub")
    if not units:
        return html.Div(id="nearest-units", className="d-units", children=[head, html.Div("附近没有可用单位",
                                                                                         className="muted")])
    rows = []
    for u in units:
        rows.append(html.Div(className="unit-row", **{"data-device": u["device"]}, children=[
            html.Span(u.get("plate") or u.get("name") or u["device"], className="unit-name"),
            html.Span("人员" if u["type"] == "person" else u["type"], className="unit-type"),
            html.Span(u.get("department") or "", className="unit-dept"),
            html.Span(f"{u['distance_m']:.0f} 米", className="unit-dist"),
            html.Span(f"约 {max(1, round(u['eta_s'] / 60))} 分钟", className="unit-eta"),
        ]))
    return html.Div(id="nearest-units", className="d-units", children=[head, *rows])


def action_buttons(case: dict, user: security.SessionUser) -> list:
    offered = DEPARTMENT_ACTIONS if user.is_department else CENTRE_ACTIONS
    allowed = set(case.get("allowed_actions") or [])
    out = []
    for name in offered:
        if name in allowed:
            spec = lifecycle.ACTIONS[name]
            out.append(html.Button(spec.zh, id={"type": "act", "name": name}, n_clicks=0,
                                   className="btn act" + (" danger" if name in DANGER else ""),
                                   **{"data-action": name}))
    if not out:
        out.append(html.Span("当前状态无可执行操作", className="muted"))
    return out


def build_payload(action: str, note: str | None, dept: int | None, hours: float | None, photos: list) -> dict:
    """The action's payload from the form, only with the fields the action takes."""
    spec = lifecycle.ACTIONS[action]
    fields = set(spec.required) | set(spec.optional)
    note = (note or "").strip()
    payload: dict = {}
    if note:
        if "reason" in fields:
            payload["reason"] = note
        elif "note" in fields:
            payload["note"] = note
    if "department_id" in fields and dept:
        payload["department_id"] = int(dept)
    if "hours" in fields and hours:
        payload["hours"] = float(hours)
    if "photos" in fields and photos:
        payload["photos"] = list(photos)
    if action == "close":
        payload.pop("close_type", None)
    missing = [f for f in spec.required if f not in payload]
    if missing:
        what = {"reason": "原因", "note": "说明"}.get(missing[0], missing[0])
        raise errors.BadInput(f"请填写{what}（{missing[0]} is required）")
    return payload


def create(server: Flask, ctx: Context, assets_folder: str) -> Dash:
    app = Dash("citywall_console", server=server, url_base_pathname="/console/", assets_folder=assets_folder,
               title="值班控制台 · 数字化城管", update_title=None, serve_locally=True, compress=False,
               suppress_callback_exceptions=True)
    app.layout = layout
    register_fit(app)

    @app.callback(Output("case-queue", "children"), Output("queue-count", "children"),
                  Input("console-refresh", "data"), Input("queue-filter", "value"), Input("console-acted", "data"))
    def _queue(_refresh, flt, _acted):
        user = security.session_user()
        if user is None:
            raise PreventUpdate
        rows, total = queue_items(user, flt or "open")
        return rows or [html.Div("暂无案件", className="muted")], f"{total} 件"

    @app.callback(Output("console-selected", "data"), Input({"type": "case-row", "index": ALL}, "n_clicks"),
                  prevent_initial_call=True)
    def _pick(clicks):
        trig = dash.ctx.triggered_id
        if not trig or not any(clicks or []):
            raise PreventUpdate
        return trig["index"]

    @app.callback(Output("case-detail", "children"), Output("act-buttons", "children"),
                  Output("action-form", "style"), Output("act-dept", "value"),
                  Input("console-selected", "data"), Input("console-refresh", "data"), Input("console-acted", "data"))
    def _detail(selected, refresh, _acted):
        user = security.session_user()
        if user is None or selected is None:
            raise PreventUpdate
        if dash.ctx.triggered_id == "console-refresh" and selected not in (refresh or {}).get("ids", []):
            raise PreventUpdate
        try:
            case = cases.get(int(selected), user.actor)
        except errors.ServiceError as exc:
            return html.Div(exc.message, className="error"), [], {"display": "none"}, None
        return (detail_view(case, user), action_buttons(case, user), {"display": "block"},
                case.get("department_id") or case.get("suggested_department_id"))

    @app.callback(Output("act-photos", "data"), Output("act-photo-list", "children"),
                  Input("act-upload", "contents"), State("act-photos", "data"), prevent_initial_call=True)
    def _upload(contents, photos):
        if security.session_user() is None or not contents:
            raise PreventUpdate
        photos = list(photos or [])
        problems = []
        for item in contents if isinstance(contents, list) else [contents]:
            try:
                data = base64.b64decode(str(item).split(",", 1)[1], validate=False)
                photos.append(uploads.save_photo(data))
            except (IndexError, ValueError, errors.ServiceError) as exc:
                problems.append(getattr(exc, "message", "不是有效的图片"))
        view = [photo_view(p) for p in photos] + [html.Div(p, className="error") for p in problems]
        return photos, view

    @app.callback(Output("act-result", "children"), Output("console-acted", "data"), Output("act-note", "value"),
                  Output("act-photos", "data", allow_duplicate=True),
                  Output("act-photo-list", "children", allow_duplicate=True),
                  Input({"type": "act", "name": ALL}, "n_clicks"),
                  State("console-selected", "data"), State("act-note", "value"), State("act-dept", "value"),
                  State("act-hours", "value"), State("act-photos", "data"), State("console-acted", "data"),
                  prevent_initial_call=True)
    def _act(clicks, selected, note, dept, hours, photos, acted):
        user = security.session_user()
        trig = dash.ctx.triggered_id
        if user is None or not trig or selected is None or not any(clicks or []):
            raise PreventUpdate
        action = trig["name"]
        try:
            payload = build_payload(action, note, dept, hours, photos or [])
            case = cases.apply(int(selected), action, user.actor, payload)
        except errors.ServiceError as exc:
            return html.Span(exc.message, className="error"), dash.no_update, dash.no_update, dash.no_update, \
                dash.no_update
        msg = f"{lifecycle.ACTIONS[action].zh}成功：{case['case_number']} → {case['status_zh']}"
        return html.Span(msg, className="ok"), (acted or 0) + 1, "", [], []

    @app.callback(Output("cam-result", "children"), Output("console-acted", "data", allow_duplicate=True),
                  Input({"type": "cam-evidence", "index": ALL}, "n_clicks"),
                  Input({"type": "cam-report", "index": ALL}, "n_clicks"),
                  State("console-selected", "data"), State("act-note", "value"), State("cam-class", "value"),
                  State("console-acted", "data"), prevent_initial_call=True)
    def _camera_action(ev_clicks, rep_clicks, selected, note, class_code, acted):
        user = security.session_user()
        trig = dash.ctx.triggered_id
        if user is None or not trig or selected is None or not any((ev_clicks or []) + (rep_clicks or [])):
            raise PreventUpdate
        return camera_action(user, trig["type"], int(trig["index"]), int(selected), note, class_code, acted)

    return app


def camera_action(user: security.SessionUser, kind: str, camera_id: int, case_id: int, note: str | None,
                  class_code: str | None, acted: int | None) -> tuple:
    """取证 (the camera's picture attached to the case) or 视频上报 (a new case from the camera)."""
    from backend.services import cameras

    token = security.viewing_token() or None
    try:
        if kind == "cam-evidence":
            case = cameras.attach_snapshot(case_id, camera_id, user.actor, token)
            msg = f"已截图取证：{case['case_number']}（{len(case.get('photos') or [])} 张照片）"
        else:
            desc = (note or "").strip()
            if not desc:
                raise errors.BadInput("请在意见栏填写问题描述（description is required）")
            case = cameras.report_from_camera(camera_id, {"class_code": class_code, "description": desc},
                                              user.actor, token)
            msg = f"视频上报成功：{case['case_number']}"
    except errors.ServiceError as exc:
        return html.Span(exc.message, className="error"), dash.no_update
    return html.Span(msg, className="ok", **{"data-case": str(case["id"])}), (acted or 0) + 1
