"""The closing summary report of an incident (应急处置总结报告), in HTML and PDF.

The report holds the incident's facts, the figures (duration, tasks, notifications, units), the command
group, the tasks with their deadlines, the full timeline and a map: an SVG drawn from the affected area,
the unit grids and roads near it, the units and the cameras (no tiles: it prints and archives anywhere).
The HTML comes from ``backend/templates/incident_report.html``; the PDF is printed from it by Debian's
Chromium in headless mode (``/usr/bin/chromium --print-to-pdf``). Files are kept under
``<data dir>/reports/incident-<id>.html|.pdf``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from datetime import datetime
from html import escape
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from shapely.geometry import box, shape
from sqlalchemy import select

from backend.domain import emergency as dom
from backend.domain.clock import CLOCK_LABELS
from backend.services import cameras, emergency, errors
from backend.services.context import current
from backend.store import models as m

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
PDF_TIMEOUT_S = 90
MAP_W, MAP_H = 760, 520

_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


class PdfUnavailable(RuntimeError):
    """No Chromium to print with, or it failed."""


def chromium() -> str | None:
    """The Chromium binary used for PDF printing (``CITYWALL_CHROMIUM`` overrides), or None."""
    env = os.environ.get("CITYWALL_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for c in CHROMIUM_CANDIDATES:
        if os.path.exists(c):
            return c
    return shutil.which("chromium")


# --- the map ------------------------------------------------------------------------------------

class _Projection:
    """Equirectangular projection of a lon/lat box onto the SVG canvas (metres kept square)."""

    def __init__(self, west: float, south: float, east: float, north: float, width: int, height: int, pad: int = 12):
        kx = math.cos(math.radians((south + north) / 2))
        span_x, span_y = max((east - west) * kx, 1e-9), max(north - south, 1e-9)
        self.scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
        self.kx, self.west, self.north = kx, west, north
        self.ox = (width - span_x * self.scale) / 2
        self.oy = (height - span_y * self.scale) / 2

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return (round(self.ox + (lon - self.west) * self.kx * self.scale, 1),
                round(self.oy + (self.north - lat) * self.scale, 1))

    def path(self, coords) -> str:
        return "M" + " L".join("%s,%s" % self.xy(x, y) for x, y in coords)


def _rings(geom: dict):
    if geom["type"] == "Polygon":
        yield from geom["coordinates"]
    elif geom["type"] == "MultiPolygon":
        for poly in geom["coordinates"]:
            yield from poly


def _lines(geom: dict):
    if geom["type"] == "LineString":
        yield geom["coordinates"]
    elif geom["type"] == "MultiLineString":
        yield from geom["coordinates"]


def map_svg(view: dict, cams: list[dict] | None = None, width: int = MAP_W, height: int = MAP_H) -> str:
    """The incident's map as an SVG: area, unit grids and roads near it, units, cameras, the location."""
    area = shape(view["perimeter"]["geometry"])
    points = [(u["lon"], u["lat"]) for u in view["units"] if u.get("lat") is not None]
    west, south, east, north = area.bounds
    for lon, lat in points + [(view["lon"], view["lat"])]:
        west, east, south, north = min(west, lon), max(east, lon), min(south, lat), max(north, lat)
    mx, my = (east - west) * 0.25 + 0.001, (north - south) * 0.25 + 0.001
    west, east, south, north = west - mx, east + mx, south - my, north + my
    frame = box(west, south, east, north)
    proj = _Projection(west, south, east, north, width, height)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" class="incident-map" role="img" aria-label="事件地图">',
             f'<rect width="{width}" height="{height}" fill="#f6f7f9"/>']
    ctx = current()
    with ctx.reader.connect() as conn:
        grids = conn.execute(select(m.UnitGrid.code, m.UnitGrid.geometry)).all()
        roads_row = conn.execute(select(m.MapLayer.geojson).where(m.MapLayer.name == "roads")).first()
    for code, raw in grids:
        g = json.loads(raw)
        if not shape(g).intersects(frame):
            continue
        d = " ".join(proj.path(r) + " Z" for r in _rings(g))
        parts.append(f'<path d="{d}" fill="none" stroke="#c9ced6" stroke-width="0.8">'
                     f'<title>{escape(code)}</title></path>')
    if roads_row is not None:
        for f in json.loads(roads_row.geojson).get("features", []):
            g = f.get("geometry") or {}
            if g.get("type") not in ("LineString", "MultiLineString") or not shape(g).intersects(frame):
                continue
            for line in _lines(g):
                parts.append(f'<path d="{proj.path(line)}" fill="none" stroke="#8a93a3" stroke-width="2"/>')
    d = " ".join(proj.path(r) + " Z" for r in _rings(view["perimeter"]["geometry"]))
    parts.append(f'<path d="{d}" fill="#e5393533" stroke="#d32f2f" stroke-width="2" class="perimeter"/>')
    for c in cams or []:
        x, y = proj.xy(c["lon"], c["lat"])
        parts.append(f'<rect x="{x - 4}" y="{y - 4}" width="8" height="8" fill="#1565c0" class="camera">'
                     f'<title>{escape(c["name"])}</title></rect>')
    for u in view["units"]:
        if u.get("lat") is None:
            continue
        x, y = proj.xy(u["lon"], u["lat"])
        parts.append(f'<circle cx="{x}" cy="{y}" r="5" fill="#2e7d32" class="unit"><title>'
                     f'{escape(u["name"] or u["device"])} {escape(u["unit_type"])}</title></circle>')
    x, y = proj.xy(view["lon"], view["lat"])
    parts.append(f'<path d="M{x},{y - 10} L{x + 7},{y + 6} L{x - 7},{y + 6} Z" fill="#d32f2f" stroke="#fff" '
                 f'class="incident"><title>{escape(view["title"])}</title></path>')
    parts.append("</svg>")
    return "".join(parts)


# --- the report ---------------------------------------------------------------------------------

def _local(ts: str | None) -> str:
    if not ts:
        return ""
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return t.astimezone(current().calendar.tz).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    h, rest = divmod(int(seconds), 3600)
    return f"{h} 小时 {rest // 60} 分" if h else f"{rest // 60} 分 {rest % 60} 秒"


def describe(entry: dict) -> str:
    """One line of text for a timeline entry."""
    p = entry.get("payload") or {}
    a = entry["action"]
    if a in ("report", "order"):
        return p.get("text", "")
    if a == "raised":
        return f"{p.get('title', '')}（{p.get('level', '')}级）" + (f" 来自案件 {p['case_number']}"
                                                                 if p.get("case_number") else "")
    if a == "activated":
        return (f"{p.get('plan_name', '')}：任务 {len(p.get('tasks', []))} 项，调派力量 {len(p.get('units', []))} 个，"
                f"通知单位 {len(p.get('notified_departments', []))} 个")
    if a == "task":
        return f"{p.get('title', '')}：{dom.TASK_STATUSES.get(p.get('from'), p.get('from'))} → " \
               f"{dom.TASK_STATUSES.get(p.get('to'), p.get('to'))} {p.get('note', '')}".strip()
    if a in ("task_overdue", "task_warning"):
        return f"{p.get('title', '')} 截止 {_local(p.get('deadline_at'))}"
    if a == "notification":
        return f"{p.get('recipient', '')}：{p.get('state', '')} {p.get('error', '')}".strip()
    if a == "level":
        return f"{p.get('from_level', '')} → {p.get('level', '')} {p.get('reason', '')}".strip()
    if a == "mode":
        return "大屏切换到事件" if p.get("on") else "大屏恢复常规"
    if a in ("conference_join", "conference_leave"):
        return f"{p.get('name', '')} {'进入' if a == 'conference_join' else '离开'}会商「{p.get('title', '')}」"
    if a in ("closed", "cancelled"):
        return p.get("summary") or p.get("reason") or ""
    return json.dumps(p, ensure_ascii=False)[:200]


def render_html(incident_id: int) -> str:
    """The summary report as a complete HTML page."""
    view = emergency.get(incident_id)
    reach = dom.Area(view["area"]["kind"], view["area"]["radius_m"], view["area"]["geometry"]).reach_m
    cams = cameras.list_cameras((view["lat"], view["lon"]), reach + emergency.CAMERA_MARGIN_M)[:12]
    depts = current().departments
    timeline = [e | {"local": _local(e["at"]), "text": describe(e)} for e in view["timeline"]]
    tasks = [t | {"deadline_local": _local(t["deadline_at"]), "done_local": _local(t["done_at"])}
             for t in view["tasks"]]
    return _env.get_template("incident_report.html").render(
        incident=view, figures=view["figures"], duration=_duration(view["figures"]["duration_s"]),
        timeline=timeline, tasks=tasks, units=view["units"], cameras=cams, group=view["command_group"],
        notifications=view["notifications"], map_svg=map_svg(view, cams), depts=depts, clock_labels=CLOCK_LABELS,
        created_local=_local(view["created_at"]), activated_local=_local(view["activated_at"]),
        closed_local=_local(view["closed_at"]), generated_local=_local(emergency.now_utc().isoformat()))


def render_pdf(html: str) -> bytes:
    """Print an HTML page to PDF with headless Chromium. Raises PdfUnavailable with the reason."""
    exe = chromium()
    if exe is None:
        raise PdfUnavailable("no Chromium found (/usr/bin/chromium); install it or set CITYWALL_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="citywall-pdf-") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(html, encoding="utf-8")
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-pdf-header-footer", f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}",
               src.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=PDF_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PdfUnavailable(f"Chromium could not print the report: {exc}") from exc
        if not out.exists() or out.stat().st_size == 0:
            raise PdfUnavailable(f"Chromium printed nothing (exit {proc.returncode}): "
                                 f"{proc.stderr.decode(errors='replace')[-300:]}")
        return out.read_bytes()


def report_dir() -> Path:
    d = current().config.data_dir / "reports"
    d.mkdir(parents=True, exist_ok=True)
    return d


def path(incident_id: int, ext: str) -> Path:
    if ext not in ("html", "pdf"):
        raise ValueError(f"unknown report format {ext!r}")
    return report_dir() / f"incident-{incident_id}.{ext}"


def publish(incident_id: int) -> dict:
    """Render and keep the HTML and the PDF; note it on the incident's timeline. Returns what was written."""
    html = render_html(incident_id)
    path(incident_id, "html").write_text(html, encoding="utf-8")
    files: dict = {"html": path(incident_id, "html").name, "html_bytes": len(html.encode())}
    try:
        pdf = render_pdf(html)
        path(incident_id, "pdf").write_bytes(pdf)
        files.update({"pdf": path(incident_id, "pdf").name, "pdf_bytes": len(pdf)})
    except PdfUnavailable as exc:
        log.warning("PDF of incident %s: %s", incident_id, exc)
        files["pdf_error"] = str(exc)
    emergency.record_report_ready(incident_id, files)
    return files


def report_file(incident_id: int, ext: str) -> Path:
    """The kept report of a closed incident (rendered now if it is missing)."""
    view_status = emergency.get(incident_id, timeline_last=1)["status"]
    if view_status not in dom.FINAL_STATUSES:
        raise errors.Conflict(f"the summary report exists once the incident is closed (it is {view_status})",
                              {"status": view_status}, code="not_closed")
    p = path(incident_id, ext)
    if not p.exists():
        if ext == "html":
            p.write_text(render_html(incident_id), encoding="utf-8")
        else:
            html_path = path(incident_id, "html")
            html = html_path.read_text(encoding="utf-8") if html_path.exists() else render_html(incident_id)
            try:
                p.write_bytes(render_pdf(html))
            except PdfUnavailable as exc:
                raise errors.ServiceError(str(exc), code="pdf_unavailable") from exc
    return p
