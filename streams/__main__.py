"""`python -m streams`: run the streams service on CITYWALL_STREAMS_PORT (default 8060).

Cameras come from CITYWALL_STREAMS_CAMERAS (a JSON file) when set, else from the database's
`cameras` table when it has rows, else (demo mode) from the demo city's synthetic cameras.

Environment: CITYWALL_STREAMS_PORT, CITYWALL_STREAMS_HOST (default 0.0.0.0), CITYWALL_STREAMS_CAMERAS,
CITYWALL_STREAMS_MAX_VIEWERS (per camera, default 32), CITYWALL_STREAMS_LINGER (seconds a camera keeps
being pulled after its last viewer, default 10), CITYWALL_STREAMS_CORS_ORIGINS (extra allowed origins,
comma-separated; the wall's origin on CITYWALL_HTTP_PORT is always allowed), REDIS_URL, DATABASE_URL,
CITYWALL_DEMO, CITYWALL_SECRET_KEY, CITYWALL_SCREEN_TOKEN.
"""
from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

from backend import config as config_module
from backend.services.auth import TOKEN_MAX_AGE
from streams.app import Settings, create_app
from streams.auth import DefaultVerifier
from streams.cameras import CameraDirectory, DbCameraDirectory, StaticCameraDirectory, demo_cameras

log = logging.getLogger("streams")


def load_directory(config) -> CameraDirectory:
    """Pick the camera directory as described in the module docstring."""
    path = os.environ.get("CITYWALL_STREAMS_CAMERAS", "")
    if path:
        return StaticCameraDirectory.from_json_file(path)
    try:
        from sqlalchemy import create_engine, inspect

        url = config.effective_database_url
        if url.startswith("sqlite:///") and not config.sqlite_path.exists() and not config.database_url:
            raise LookupError("no database file yet")
        engine = create_engine(url)
        if inspect(engine).has_table("cameras"):
            directory = DbCameraDirectory(engine)
            if directory.list_cameras():
                log.info("cameras from the database")
                return directory
    except Exception as exc:  # no database yet: fall back below
        log.info("no cameras in the database (%s)", exc)
    if config.demo:
        log.info("demo mode: %d synthetic cameras", len(demo_cameras()))
        return StaticCameraDirectory(demo_cameras())
    log.warning("no cameras configured")
    return StaticCameraDirectory([])


def backend_secret(config) -> str:
    """The key the backend signs login tokens with: CITYWALL_SECRET_KEY, or the one kept in the database."""
    if config.secret_key:
        return config.secret_key
    try:
        from backend.services import auth
        from backend.services.context import Context

        ctx = Context.from_config(config)
        try:
            return auth.secret_key(ctx)
        finally:
            ctx.engine.dispose()
    except Exception as exc:  # no database yet: only the screen token (or demo mode) lets viewers in
        log.warning("login tokens cannot be checked (%s)", exc)
        return ""


def main() -> None:
    logging.basicConfig(level=os.environ.get("CITYWALL_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    config = config_module.load()
    try:
        directory = load_directory(config)
    except ValueError as exc:
        sys.exit(f"streams: {exc}")
    verifier = DefaultVerifier(backend_secret(config), config.screen_token, demo=config.demo and
                               config.wall_access == "open", max_age=TOKEN_MAX_AGE)
    app = create_app(directory, verifier, Settings.from_env(config), own_port=config.streams_port)
    host = os.environ.get("CITYWALL_STREAMS_HOST", "0.0.0.0")
    web.run_app(app, host=host, port=config.streams_port, access_log=None,
                print=lambda msg: log.info("%s", msg))


if __name__ == "__main__":
    main()
