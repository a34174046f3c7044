"""The HTTP API through Flask's test client, on SQLite and PostgreSQL, with real Redis."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from backend.store import models as m
from backend.web import create_app
from tests import support


@pytest.fixture
def client(store):
    app = create_app(store)
    with app.test_client() as c:
        c.store = store
        yield c
    store.outbox.stop()


def login(client, username: str) -> dict:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": support.PASSWORD})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def report(**extra) -> dict:
    lat, lon = support.inside()
    body = {"class_code": "E0102", "lat": lat, "lon": lon, "description": "路边暴露垃圾", "source": "inspector"}
    body.update(extra)
    return body


def stored(client) -> tuple[int, int]:
    with client.store.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(m.Case.__table__)).scalar_one(),
                conn.execute(select(func.count()).select_from(m.Event.__table__)).scalar_one())


def assert_error(r, status: int, code: str | None = None):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    err = r.json["error"]
    assert set(err) == {"code", "message", "details"} and err["message"]
    if code:
        assert err["code"] == code, err


def test_health_reports_database_and_redis(client):
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json["database"]["ok"] and r.json["redis"]["ok"]


def test_create_list_get_and_act(client):
    h = login(client, "inspector")
    r = client.post("/api/v1/cases", json=report(), headers=h)
    assert r.status_code == 201
    case = r.json
    assert {"id", "case_number", "grid_code", "status"} <= set(case)
    assert case["status"] == "to_register" and r.headers["Location"].endswith(f"/cases/{case['id']}")
    sup = login(client, "supervisor")
    r = client.post(f"/api/v1/cases/{case['id']}/actions/register", headers=sup)
    assert r.status_code == 200 and r.json["status"] == "registered"
    r = client.post(f"/api/v1/cases/{case['id']}/actions/dispatch", json={}, headers=login(client, "dispatcher"))
    assert r.json["status"] == "dispatched" and r.json["department_name"]
    r = client.get(f"/api/v1/cases/{case['id']}", headers=sup)
    assert [e["action"] for e in r.json["timeline"]] == ["create", "register", "dispatch"]
    assert r.json["timeline"][1]["action_zh"] == "立案"
    r = client.get("/api/v1/cases?status=dispatched&per_page=10", headers=sup)
    assert r.json["total"] == 1 and r.json["items"][0]["id"] == case["id"]
    dept = login(client, "dept_sanitation")
    r = client.get("/api/v1/cases", headers=dept)
    assert r.json["total"] == 1  # dispatched to 环卫: the sanitation user sees it
    assert client.get("/api/v1/cases", headers=login(client, "dept_roads")).json["total"] == 0


def test_action_in_wrong_state_is_409_listing_allowed(client):
    h = login(client, "inspector")
    case = client.post("/api/v1/cases", json=report(), headers=h).json
    r = client.post(f"/api/v1/cases/{case['id']}/actions/close", headers=login(client, "supervisor"))
    assert_error(r, 409, "action_not_allowed")
    assert "register" in r.json["error"]["details"]["allowed"]


def test_bad_input_gets_the_right_status_and_changes_nothing(client):
    h = login(client, "inspector")
    client.post("/api/v1/cases", json=report(), headers=h)
    before = stored(client)
    url = "/api/v1/cases"
    # malformed JSON
    assert_error(client.post(url, data="{not json", headers={**h, "Content-Type": "application/json"}), 400,
                 "malformed_json")
    # unknown class code
    assert_error(client.post(url, json=report(class_code="E7777"), headers=h), 400, "unknown_class")
    # coordinates outside the city
    assert_error(client.post(url, json=report(lat=31.23, lon=121.47), headers=h), 400, "outside_city")
    # oversized body
    big = report(description="垃" * 10) | {"address": "x" * (2 * 1024 * 1024)}
    assert_error(client.post(url, data=json.dumps(big), headers={**h, "Content-Type": "application/json"}), 413)
    # a wrong role: a department may not report, an inspector may not register
    assert_error(client.post(url, json=report(), headers=login(client, "dept_roads")), 403)
    case_id = client.get("/api/v1/cases", headers=h).json["items"][0]["id"]
    assert_error(client.post(f"/api/v1/cases/{case_id}/actions/register", headers=h), 403)
    # unknown action, unknown case, bad payload
    assert_error(client.post(f"/api/v1/cases/{case_id}/actions/teleport", headers=h), 404, "unknown_action")
    assert_error(client.get("/api/v1/cases/999999", headers=h), 404)
    assert_error(client.post(f"/api/v1/cases/{case_id}/actions/cancel", json={"note": 5},
                             headers=login(client, "supervisor")), 400)
    # no token, a forged token, a stale (revoked) token
    assert_error(client.post(url, json=report()), 401, "no_token")
    assert_error(client.post(url, json=report(), headers={"Authorization": "Bearer abc.def.ghi"}), 401, "bad_token")
    from backend.services import auth

    stale = h
    auth.set_password("inspector", support.PASSWORD)  # a password change revokes earlier tokens
    assert_error(client.post(url, json=report(), headers=stale), 401, "token_revoked")
    # unknown filter, bad grid code
    h2 = login(client, "inspector")
    assert_error(client.get("/api/v1/cases?colour=red", headers=h2), 400)
    assert_error(client.get("/api/v1/cases?grid_code=110101999999999", headers=h2), 400, "unknown_grid")
    assert_error(client.get("/api/v1/cases?class_code=E77", headers=h2), 400, "unknown_class")
    assert client.get(f"/api/v1/cases?grid_code={support.grid_code(1, 1)}", headers=h2).json["total"] == 1
    assert_error(client.get("/api/v1/grids/123"), 404)
    assert stored(client) == before


def test_wrong_password_and_rate_limit(client):
    from backend.services import auth

    auth.limiter._fails.clear()
    for _ in range(10):
        r = client.post("/api/v1/auth/token", json={"username": "leader", "password": "nope"})
        assert_error(r, 401, "bad_credentials")
    r = client.post("/api/v1/auth/token", json={"username": "leader", "password": support.PASSWORD})
    assert_error(r, 429)
    auth.limiter._fails.clear()


def test_grids_catalog_departments_and_openapi(client):
    g = client.get("/api/v1/grids").json
    assert g["type"] == "FeatureCollection" and len(g["features"]) == 16
    lat, lon = support.inside(2, 3)
    assert client.get(f"/api/v1/grids/locate?lat={lat}&lon={lon}").json["grid_code"] == support.grid_code(2, 3)
    cat = client.get("/api/v1/catalog").json
    assert any(c["code"] == "0102" for c in cat["classes"])
    assert client.get("/api/v1/catalog/E0102").json["name"] == "暴露垃圾"
    assert len(client.get("/api/v1/departments").json["departments"]) >= 12
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/cases/{id}/actions/{action}" in spec["paths"]
    enum = spec["paths"]["/cases/{id}/actions/{action}"]["post"]["parameters"][1]["schema"]["enum"]
    for name in ("verify", "register", "cancel", "dispatch", "accept", "feedback", "return", "postpone",
                 "suspend", "resume", "check", "rework", "close", "supervise", "self_handle"):
        assert name in enum


def test_evaluation_and_audit_endpoints(client):
    h = login(client, "inspector")
    case = client.post("/api/v1/cases", json=report(), headers=h).json
    client.post(f"/api/v1/cases/{case['id']}/actions/register", headers=login(client, "supervisor"))
    client.post(f"/api/v1/cases/{case['id']}/actions/dispatch", headers=login(client, "dispatcher"))
    lead = login(client, "leader")
    r = client.get("/api/v1/evaluation/departments", headers=lead)
    assert r.status_code == 200
    top = [d for d in r.json["departments"] if d["cases"]]
    assert len(top) == 1 and top[0]["department_type"] == "sanitation" and top[0]["grade"] in "ABCDE"
    assert_error(client.get("/api/v1/evaluation/departments?from=yesterday", headers=lead), 400)
    r = client.get("/api/v1/audit/verify", headers=lead)
    assert r.status_code == 200 and r.json["ok"] is True and r.json["checked"] == 3
    assert_error(client.get("/api/v1/audit/verify", headers=h), 403)


def test_cameras_registry_and_errors(client):
    lead = login(client, "leader")
    lat, lon = support.inside(0, 0)
    r = client.post("/api/v1/cameras", json={"name": "东单路口东北角", "lat": lat, "lon": lon,
                                            "source": "synthetic:东单?size=640x360"}, headers=lead)
    assert r.status_code == 201 and r.json["grid_code"] == support.grid_code(0, 0)
    assert "source" not in r.json  # the source URL (maybe with credentials) is never shown
    cam = r.json
    near = client.get(f"/api/v1/cameras?lat={lat}&lon={lon}&radius_m=100").json["cameras"]
    assert [c["id"] for c in near] == [cam["id"]] and near[0]["distance_m"] < 100
    assert_error(client.post("/api/v1/cameras", json={"name": "x", "lat": lat, "lon": lon, "source": "http://x"},
                             headers=lead), 400)
    assert_error(client.post("/api/v1/cameras", json={"name": "x", "lat": 31.2, "lon": 121.5,
                                                     "source": "synthetic:x"}, headers=lead), 400, "outside_city")
    assert_error(client.post("/api/v1/cameras", json={"name": "x", "lat": lat, "lon": lon, "source": "synthetic:x"},
                             headers=login(client, "inspector")), 403)
    assert_error(client.get("/api/v1/cameras/99999"), 404)
    r = client.patch(f"/api/v1/cameras/{cam['id']}", json={"status": "disabled"}, headers=lead)
    assert r.json["status"] == "disabled"


def test_openapi_lists_every_api_route(client):
    spec = client.get("/api/v1/openapi.json").json
    app = client.application
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.rule != "/api/v1/openapi.json":
            import re
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule[len("/api/v1"):])
            assert path in spec["paths"], path
