"""The screens (大屏与控制台): the wall at `/` and the duty console at `/console/`, on the web process's
Flask server, with Socket.IO on the same port (backend.realtime)."""
from __future__ import annotations

from pathlib import Path

from flask import Flask

from backend.services.context import Context

ASSETS = str(Path(__file__).resolve().parent.parent / "assets")


def mount(app: Flask, ctx: Context) -> None:
    """Add the wall, the console, their routes, access control and Socket.IO to `app`."""
    from backend import realtime
    from backend.services import auth
    from dashboard import console_page, routes, security, wall_page

    if not app.secret_key:
        app.secret_key = auth.secret_key(ctx)  # signs the session cookie (console login, wall token)
    security.install(app)
    app.register_blueprint(routes.bp)
    wall_page.create(app, ctx, ASSETS)
    console_page.create(app, ctx, ASSETS)
    realtime.init_app(app, ctx, security.socket_identity)
