"""Where the streams service learns which cameras exist (摄像头目录).

`CameraDirectory` is the interface; `StaticCameraDirectory` holds a list (from code or a JSON file,
for tests and the demo), `DbCameraDirectory` reads the `Camera` table through SQLAlchemy.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Protocol

CAMERA_STATUSES = ("active", "disabled")


@dataclass(frozen=True)
class CameraInfo:
    """One camera: name, location (WGS-84), unit grid (单元网格) code, source and status."""

    id: int
    name: str
    lat: float
    lon: float
    grid_code: str | None
    source: str
    status: str = "active"

    def public(self) -> dict:
        """Fields safe to show to a viewer (never the source: an RTSP URL may carry a password)."""
        d = asdict(self)
        d.pop("source")
        return d


def camera_from_dict(raw: dict) -> CameraInfo:
    """Validate one camera record; raises ValueError naming the bad field."""
    if not isinstance(raw, dict):
        raise ValueError(f"a camera must be a JSON object, got {type(raw).__name__}")
    try:
        cam_id = int(raw["id"])
        name = str(raw["name"])
        source = str(raw["source"])
        lat = float(raw.get("lat", 0.0))
        lon = float(raw.get("lon", 0.0))
    except KeyError as exc:
        raise ValueError(f"camera record is missing the field {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"camera record has a bad value: {exc}") from exc
    status = str(raw.get("status", "active"))
    if status not in CAMERA_STATUSES:
        raise ValueError(f"camera {cam_id}: status must be one of {CAMERA_STATUSES}, got {status!r}")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"camera {cam_id}: lat/lon out of range: {lat}, {lon}")
    grid = raw.get("grid_code")
    return CameraInfo(cam_id, name, lat, lon, str(grid) if grid else None, source, status)


class CameraDirectory(Protocol):
    """Look up cameras. Implementations may block (database): call them from a thread."""

    def list_cameras(self) -> list[CameraInfo]: ...

    def get(self, camera_id: int) -> CameraInfo | None: ...


class StaticCameraDirectory:
    """A fixed set of cameras."""

    def __init__(self, cameras: Iterable[CameraInfo]) -> None:
        self._cameras: dict[int, CameraInfo] = {}
        for cam in cameras:
            if cam.id in self._cameras:
                raise ValueError(f"duplicate camera id {cam.id}")
            self._cameras[cam.id] = cam

    @classmethod
    def from_json_file(cls, path: str | Path) -> "StaticCameraDirectory":
        """Load `[{"id", "name", "lat", "lon", "grid_code", "source", "status"}, ...]` from a file."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read camera file {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"camera file {path} is not valid JSON: {exc}") from exc
        if isinstance(raw, dict) and "cameras" in raw:
            raw = raw["cameras"]
        if not isinstance(raw, list):
            raise ValueError(f"camera file {path} must hold a list of cameras")
        return cls(camera_from_dict(item) for item in raw)

    def list_cameras(self) -> list[CameraInfo]:
        return sorted(self._cameras.values(), key=lambda c: c.id)

    def get(self, camera_id: int) -> CameraInfo | None:
        return self._cameras.get(camera_id)


class DbCameraDirectory:
    """Cameras read from the `cameras` table (streams.models.Camera)."""

    def __init__(self, engine) -> None:
        from sqlalchemy.orm import sessionmaker

        self._sessions = sessionmaker(engine)

    @staticmethod
    def _info(row) -> CameraInfo:
        return CameraInfo(row.id, row.name, row.lat, row.lon, row.grid_code, row.source, row.status)

    def list_cameras(self) -> list[CameraInfo]:
        from sqlalchemy import select

        from streams.models import Camera

        with self._sessions() as session:
            return [self._info(r) for r in session.scalars(select(Camera).order_by(Camera.id))]

    def get(self, camera_id: int) -> CameraInfo | None:
        from streams.models import Camera

        with self._sessions() as session:
            row = session.get(Camera, camera_id)
            return self._info(row) if row else None


# A dozen street corners of the demo city, each fed by a synthetic street scene.
_DEMO_CORNERS = [
    ("中山路/解放街口", 30.2741, 120.1551),
    ("延安路/庆春路口", 30.2598, 120.1659),
    ("湖滨路/平海路口", 30.2575, 120.1612),
    ("体育场路/武林路口", 30.2712, 120.1618),
    ("凤起路/中河路口", 30.2660, 120.1720),
    ("西湖大道/定安路口", 30.2493, 120.1693),
    ("建国路/清泰街口", 30.2552, 120.1795),
    ("环城北路/延安路口", 30.2770, 120.1644),
    ("南山路/河坊街口", 30.2448, 120.1601),
    ("秋涛路/望江路口", 30.2390, 120.1900),
    ("文三路/学院路口", 30.2810, 120.1330),
    ("天目山路/教工路口", 30.2760, 120.1400),
]


def demo_cameras(size: str = "640x360") -> list[CameraInfo]:
    """The demo city's street-corner cameras (演示城市路口监控), synthetic sources."""
    cams = []
    for i, (name, lat, lon) in enumerate(_DEMO_CORNERS, start=1):
        grid = f"330102{1 + (i - 1) // 4:03d}{1 + (i - 1) % 4:03d}001"
        cams.append(CameraInfo(i, name, lat, lon, grid, f"synthetic:CAM-{i:02d}?size={size}&fps=25"))
    return cams
