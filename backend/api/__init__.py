"""The HTTP API under /api/v1: one blueprint per resource."""
from __future__ import annotations

from flask import Flask

PREFIX = "/api/v1"


def register(app: Flask) -> None:
    from backend.api import audit, auth, cameras, cases, evaluation, health, openapi, reference
    from backend.api.common import install_error_handlers

    install_error_handlers(app)
    from backend.api import gps  # 车辆/人员定位, 设备登记, 上岗履职
    app.register_blueprint(gps.bp, url_prefix=PREFIX)
    from backend.api import emergency; app.register_blueprint(emergency.bp, url_prefix=PREFIX)  # 应急指挥
    from backend.api import conferences; app.register_blueprint(conferences.bp, url_prefix=PREFIX)  # 视频会商
    for mod in (health, auth, cases, reference, evaluation, audit, cameras, openapi):
        app.register_blueprint(mod.bp, url_prefix=PREFIX)
