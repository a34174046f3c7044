"""The HTTP API under /api/v1: one blueprint per resource."""
from __future__ import annotations

from flask import Flask

PREFIX = "/api/v1"


def register(app: Flask) -> None:
    from backend.api import audit, auth, cameras, cases, evaluation, health, openapi, reference
    from backend.api.common import install_error_handlers

    install_error_handlers(app)
    for mod in (health, auth, cases, reference, evaluation, audit, cameras, openapi):
        app.register_blueprint(mod.bp, url_prefix=PREFIX)
