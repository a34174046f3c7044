"""`python -m streams`: run the streams service on CITYWALL_STREAMS_PORT (default 8060).

Cameras come from CITYWALL_STREAMS_CAMERAS (a JSON file) when set, else from the database's
`cameras` table when it has rows, else (demo mode) from the demo city's synthetic cameras.
"""
from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

from backend import config as config_module
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


def main() -> None:
    logging.basicConfig(level=os.environ.get("CITYWALL_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    config = config_module.load()
    try:
        directory = load_directory(config)
    except ValueError as exc:
        sys.exit(f"streams: {exc}")
    verifier = DefaultVerifier(config.secret_key, config.screen_token, demo=config.demo)
    app = create_app(directory, verifier, Settings.from_env(config), own_port=config.streams_port)
    host = os.environ.get("CITYWALL_STREAMS_HOST", "0.0.0.0")
    web.run_app(app, host=host, port=config.streams_port, access_log=None,
                print=lambda msg: log.info("%s", msg))


if __name__ == "__main__":
    main()
