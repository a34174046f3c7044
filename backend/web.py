"""The web process: Flask app factory. The API (`/api/v1`), the wall (`/`), the console (`/console/`)
and Socket.IO (`/socket.io/`) share one Flask server and one port."""
from __future__ import annotations

import logging

from flask import Flask

from backend.services.context import Context, current, use

MAX_BODY = 1024 * 1024  # 1 MiB: a case with photo references is a few KB


def create_app(ctx: Context | None = None, screens: bool = True) -> Flask:
    """The web app. `screens=False` leaves out the wall, the console and Socket.IO (API only)."""
    if ctx is not None:
        use(ctx)
    ctx = current()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["JSON_AS_ASCII"] = False
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["citywall"] = ctx

    from backend import api

    api.register(app)
    if screens:
        import dashboard

        dashboard.mount(app, ctx)
    ctx.outbox.start_for("web")
    logging.getLogger(__name__).info("web app ready on database %s", ctx.engine.dialect.name)
    return app
