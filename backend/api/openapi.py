"""GET /openapi.json: the API described as OpenAPI 3.1, built from the lifecycle's own action table."""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend.domain import lifecycle
from backend.services.cases import describe_actions

bp = Blueprint("openapi", __name__)

ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict | None = None) -> dict:
    body = {"description": desc}
    if schema:
        body["content"] = {"application/json": {"schema": schema}}
    return body


def _errors(*codes: int) -> dict:
    text = {400: "bad input", 401: "not signed in or bad token", 403: "role or department may not",
            404: "not found", 409: "action not allowed in this state (lists the allowed ones)",
            413: "body too large", 429: "too many requests", 503: "a dependency is down"}
    return {str(c): _resp(text[c], ERROR) for c in codes}


def _q(name: str, desc: str, typ: str = "string", required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": typ}}


def spec() -> dict:
    actions = describe_actions()
    case_props = {
        "id": {"type": "integer"}, "case_number": {"type": "string", "example": "E0102202611260001"},
        "class_code": {"type": "string", "example": "E0102"}, "status": {"type": "string",
                                                                         "enum": list(lifecycle.STATUSES)},
        "grid_code": {"type": "string", "pattern": "^[0-9]{15}$"}, "lat": {"type": "number"},
        "lon": {"type": "number"}, "department_id": {"type": ["integer", "null"]},
        "deadline_at": {"type": ["string", "null"], "format": "date-time"},
        "bundle_deadline_at": {"type": ["string", "null"], "format": "date-time"},
        "overdue": {"type": "boolean"}, "pending": {"type": ["string", "null"]},
    }
    paths = {
        "/health": {"get": {"summary": "Database and Redis reachable", "responses": {
            "200": _resp("all reachable"), **_errors(503)}}},
        "/auth/token": {"post": {"summary": "Username and password → bearer token (签发令牌)",
                                 "security": [],
                                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                                     "type": "object", "required": ["username", "password"],
                                     "properties": {"username": {"type": "string"},
                                                    "password": {"type": "string"}}}}}},
                                 "responses": {"200": _resp("a token"), **_errors(400, 401, 429)}}},
        "/me": {"get": {"summary": "The signed-in user", "responses": {"200": _resp("user"), **_errors(401)}}},
        "/catalog": {"get": {"summary": "部件/事件 classes with codes and time limits", "security": [],
                             "responses": {"200": _resp("the catalog")}}},
        "/catalog/{class_code}": {"get": {"summary": "One class", "security": [], "parameters": [
            {"name": "class_code", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _resp("the class"), **_errors(404)}}},
        "/departments": {"get": {"summary": "Departments (专业部门)", "security": [],
                                 "responses": {"200": _resp("departments")}}},
        "/grids": {"get": {"summary": "Unit grids (单元网格) as GeoJSON", "security": [],
                           "parameters": [_q("street_code", "9-digit street"), _q("community_code", "12-digit")],
                           "responses": {"200": _resp("FeatureCollection")}}},
        "/grids/locate": {"get": {"summary": "Point → unit grid, community, street", "security": [],
                                  "parameters": [_q("lat", "WGS-84", "number", True),
                                                 _q("lon", "WGS-84", "number", True)],
                                  "responses": {"200": _resp("the grid"), **_errors(400, 404)}}},
        "/grids/{code}": {"get": {"summary": "One unit grid", "security": [], "parameters": [
            {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _resp("Feature"), **_errors(404)}}},
        "/streets": {"get": {"summary": "Streets (街道) as GeoJSON", "security": [],
                             "responses": {"200": _resp("FeatureCollection")}}},
        "/communities": {"get": {"summary": "Communities (社区) as GeoJSON", "security": [],
                                 "responses": {"200": _resp("FeatureCollection")}}},
        "/map/{name}": {"get": {"summary": "Offline basemap layer: district, roads", "security": [],
                                "parameters": [{"name": "name", "in": "path", "required": True,
                                                "schema": {"type": "string", "enum": ["district", "roads"]}}],
                                "responses": {"200": _resp("FeatureCollection"), **_errors(404)}}},
        "/duty-grids": {"get": {"summary": "责任网格 of inspectors", "responses": {"200": _resp("list"),
                                                                                 **_errors(401)}}},
        "/components": {"get": {"summary": "部件 instances", "security": [], "parameters": [
            _q("bbox", "west,south,east,north"), _q("class_code", "e.g. C0118"), _q("grid_code", "15 digits"),
            _q("limit", "at most 20000", "integer")], "responses": {"200": _resp("components"), **_errors(400)}}},
        "/cases": {
            "post": {"summary": "上报: create a case", "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/NewCase"}}}},
                "responses": {"201": _resp("created", {"$ref": "#/components/schemas/Case"}),
                              **_errors(400, 401, 403, 413)}},
            "get": {"summary": "List cases", "parameters": [
                _q("status", "comma list, or 'open'"), _q("class_code", "E0102 or a prefix such as E01"),
                _q("department_id", "department", "integer"), _q("grid_code", "unit grid"),
                _q("street_code", "street"), _q("source", "report source"), _q("overdue", "true: past deadline"),
                _q("from", "created at or after (ISO 8601)"), _q("to", "created before (ISO 8601)"),
                _q("q", "text search"), _q("page", "1-based", "integer"), _q("per_page", "≤ 500", "integer"),
                _q("sort", "created_at, -created_at, deadline_at, id")],
                "responses": {"200": _resp("a page of cases"), **_errors(400, 401)}}},
        "/cases/{id}": {"get": {"summary": "A case with its full timeline and the actions allowed now",
                                "parameters": [{"name": "id", "in": "path", "required": True,
                                                "schema": {"type": "integer"}}],
                                "responses": {"200": _resp("the case", {"$ref": "#/components/schemas/Case"}),
                                              **_errors(401, 404)}}},
        "/cases/{id}/actions/{action}": {"post": {
            "summary": "Take an action on a case",
            "description": "\n".join(f"- `{a['name']}` {a['zh']}: roles {', '.join(a['roles'])}; from "
                                     f"{', '.join(a['from_states'])}; fields {', '.join(a['required']) or '-'}"
                                     f" (optional {', '.join(a['optional']) or '-'})" for a in actions),
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                           {"name": "action", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": [a["name"] for a in actions]}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": _resp("the case after the action", {"$ref": "#/components/schemas/Case"}),
                          **_errors(400, 401, 403, 404, 409)}}},
        "/actions": {"get": {"summary": "Every action with its Chinese term, roles and fields", "security": [],
                             "responses": {"200": _resp("actions")}}},
        "/evaluation/departments": {"get": {"summary": "专业部门综合评价 over a window", "parameters": [
            _q("from", "ISO 8601, default 30 days before 'to'"), _q("to", "ISO 8601, default now")],
            "responses": {"200": _resp("departments ranked"), **_errors(400, 401)}}},
        "/audit/verify": {"get": {"summary": "Check the hash chain of every event row", "responses": {
            "200": _resp("ok or the first broken row"), **_errors(401, 403)}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "citywall API", "version": "1",
                 "description": "数字化城管指挥大厅 — cases, base data, evaluation, audit. Errors: "
                                "{\"error\": {\"code\", \"message\", \"details\"}}."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message", "details"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "details": {"type": "object"}}}}},
                "NewCase": {"type": "object", "required": ["class_code", "lat", "lon", "description", "source"],
                            "properties": {
                                "class_code": {"type": "string", "description": "C/E + 4 digits, e.g. E0102"},
                                "kind": {"type": "string", "description": "C or E, only with a 4-digit code"},
                                "lat": {"type": "number"}, "lon": {"type": "number"},
                                "description": {"type": "string", "maxLength": 2000},
                                "source": {"type": "string", "enum": list(lifecycle.SOURCES)},
                                "address": {"type": "string"}, "photos": {"type": "array",
                                                                          "items": {"type": "string"}},
                                "component_code": {"type": "string"},
                                "urgency": {"type": "string", "enum": ["normal", "urgent"]}}},
                "Case": {"type": "object", "properties": case_props},
            },
        },
    }


def _described_from_routes(app, described: dict) -> dict:
    """Every other /api/v1 route, described from its view's docstring (so no endpoint goes missing)."""
    import re

    out: dict = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule[len("/api/v1"):])
        methods = sorted(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
        view = app.view_functions.get(rule.endpoint)
        doc = (view.__doc__ or rule.endpoint).strip().splitlines()[0] if view else rule.endpoint
        for method in methods:
            if method in described.get(path, {}):
                continue
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in re.findall(r"{([^}]+)}", path)]
            out.setdefault(path, {})[method] = {
                "summary": doc, "parameters": params,
                "responses": {"200": _resp("success"), **_errors(400, 401, 403, 404)}}
    return out


@bp.get("/openapi.json")
def openapi():
    from flask import current_app

    doc = spec()
    for path, ops in _described_from_routes(current_app, doc["paths"]).items():
        doc["paths"].setdefault(path, {}).update(ops)
    return jsonify(doc)
