"""The web process: Flask app factory. The API (`/api/v1`), the wall (`/`), the console (`/console/`)
and Socket.IO (`/socket.io/`) share one Flask server and one port."""
from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface

from backend.services.context import Context, current, use

MAX_BODY = 1024 * 1024  # 1 MiB: a case with photo references is a few KB


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON answers encoded with orjson: the same compact UTF-8 JSON as the standard encoder with
    ensure_ascii off, in a fraction of its time (a case is ~50 fields). What orjson does not encode itself
    (datetimes, Decimal, …) goes through Flask's own default; anything it refuses (an integer beyond 64 bits),
    and pretty-printed or otherwise tuned output, falls back to the standard encoder."""

    _OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs:
            try:
                return orjson.dumps(obj, default=self.default, option=self._OPTIONS).decode()
            except orjson.JSONEncodeError:
                kwargs = {"separators": (",", ":")}  # as compact as orjson's
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        if (self.compact is None and self._app.debug) or self.compact is False:  # pretty, for a developer
            return super().response(obj)
        return self._app.response_class(f"{self.dumps(obj)}\n", mimetype=self.mimetype)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, minus the cookie parsing and signer set-up for a request that brings no
    cookie at all (every API call with a bearer token): it starts an empty session like Flask would."""

    def open_session(self, app: Flask, request):
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)


def create_app(ctx: Context | None = None, screens: bool = True) -> Flask:
    """The web app. `screens=False` leaves out the wall, the console and Socket.IO (API only)."""
    if ctx is not None:
        use(ctx)
    ctx = current()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["JSON_AS_ASCII"] = False
    app.json = JSONProvider(app)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.session_interface = SessionInterface()
    app.extensions["citywall"] = ctx

    from backend import api

    api.register(app)
    if screens:
        import dashboard

        dashboard.mount(app, ctx)
    ctx.outbox.start_for("web")
    logging.getLogger(__name__).info("web app ready on database %s", ctx.engine.dialect.name)
    return app
