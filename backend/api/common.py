"""What every blueprint shares: the JSON error shape, body parsing, authentication."""
from __future__ import annotations

import functools
import json

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend.services import auth, errors


def error_response(status: int, code: str, message: str, details: dict | None = None):
    resp = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    resp.status_code = status
    return resp


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.ServiceError)
    def _service_error(exc: errors.ServiceError):
        resp = error_response(exc.status, exc.code, exc.message, exc.details)
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="citywall"'
        if exc.status == 429 and "retry_after" in exc.details:
            resp.headers["Retry-After"] = str(exc.details["retry_after"])
        return resp

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return error_response(413, "too_large", f"the request body is larger than {limit} bytes",
                              {"limit": limit})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if not request.path.startswith("/api/"):
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "an unexpected error occurred; it was logged")


def json_body() -> dict:
    """The request's JSON object, or a clear 400."""
    raw = request.get_data(cache=True)
    if not raw:
        raise errors.BadInput("a JSON body is required")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadInput(f"the body is not valid JSON: {exc}", code="malformed_json") from exc
    if not isinstance(data, dict):
        raise errors.BadInput("the body must be a JSON object")
    return data


def current_actor():
    """The actor of this request from `Authorization: Bearer <token>`; 401 without a valid one."""
    if "actor" in g:
        return g.actor
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise errors.Unauthorized("sign in first: send 'Authorization: Bearer <token>'", code="no_token")
    g.actor, g.user = auth.actor_for_token(header[7:].strip())
    return g.actor


def login_required(roles: set[str] | None = None):
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            actor = current_actor()
            if roles is not None and actor.role not in roles and actor.role != "admin":
                raise errors.Forbidden(f"role {actor.role!r} may not do this", {"roles": sorted(roles)})
            return fn(*args, **kwargs)
        return inner
    return wrap


def path_id(raw: str, what: str) -> int:
    """An integer id from the URL path; anything else is a 404 for that resource."""
    try:
        return int(raw)
    except ValueError as exc:
        raise errors.NotFound(f"{what} {raw!r} does not exist") from exc
