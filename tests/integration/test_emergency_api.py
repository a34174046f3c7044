"""Emergency command over HTTP (/api/v1/incidents…), on SQLite and PostgreSQL with the real Redis."""
from __future__ import annotations

import pytest

from backend.services import emergency, notify
from backend.web import create_app
from tests import support
from tests.integration.test_emergency_service import fake_units


@pytest.fixture
def client(store, monkeypatch):
    monkeypatch.setattr(emergency, "find_units", fake_units)
    monkeypatch.setattr(emergency, "mark_unit", lambda *a, **k: None)
    notify.use_driver(notify.LogDriver())
    app = create_app(store, screens=False)
    with app.test_client() as c:
        c.store = store
        yield c
    store.outbox.stop()
    notify.use_driver(None)


def login(client, username: str) -> dict:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": support.PASSWORD})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def assert_error(r, status: int, code: str | None = None):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    err = r.json["error"]
    assert set(err) == {"code", "message", "details"} and err["message"]
    if code:
        assert err["code"] == code, err


def direct(**extra) -> dict:
    lat, lon = support.inside(2, 2)
    body = {"type": "flooding", "level": "III", "title": "景山路口内涝", "lat": lat, "lon": lon,
            "area": {"radius_m": 250}}
    body.update(extra)
    return body


def test_raise_from_a_case_and_directly(client):
    lat, lon = support.inside()
    r = client.post("/api/v1/cases", headers=login(client, "inspector"), json={
        "class_code": "E0401", "lat": lat, "lon": lon, "description": "路面塌陷约2米", "source": "inspector"})
    case = r.json
    sup = login(client, "supervisor")
    r = client.post("/api/v1/incidents", json={"case_id": case["id"]}, headers=sup)
    assert r.status_code == 201 and r.json["type"] == "road_collapse" and r.json["level"] == "IV"
    assert r.headers["Location"].endswith(f"/incidents/{r.json['id']}")
    assert_error(client.post("/api/v1/incidents", json={"case_id": case["id"]}, headers=sup), 409, "incident_exists")
    assert_error(client.post("/api/v1/incidents", json=direct(), headers=sup), 403)
    r = client.post("/api/v1/incidents", json=direct(), headers=login(client, "leader"))
    assert r.status_code == 201 and r.json["status"] == "raised"
    r = client.get("/api/v1/incidents?status=raised", headers=sup)
    assert len(r.json["items"]) == 2


def test_bad_input_answers_json_errors(client):
    lead = login(client, "leader")
    assert_error(client.post("/api/v1/incidents", json=direct()), 401)
    assert_error(client.post("/api/v1/incidents", data="{nope", headers=lead), 400, "malformed_json")
    assert_error(client.post("/api/v1/incidents", json=direct(level="V"), headers=lead), 400)
    assert_error(client.post("/api/v1/incidents", json=direct(area={"radius_m": "big"}), headers=lead), 400)
    assert_error(client.post("/api/v1/incidents", json=direct(colour="red"), headers=lead), 400)
    assert_error(client.get("/api/v1/incidents/99999", headers=lead), 404)
    assert_error(client.get("/api/v1/incidents/abc", headers=lead), 404)
    assert_error(client.post("/api/v1/incidents/99999/activate", headers=lead), 404)
    inc = client.post("/api/v1/incidents", json=direct(), headers=lead).json
    assert_error(client.post(f"/api/v1/incidents/{inc['id']}/activate", json={"plan_key": "gas_leak-I"},
                             headers=lead), 400)
    assert_error(client.post(f"/api/v1/incidents/{inc['id']}/close", headers=lead), 409, "action_not_allowed")
    assert_error(client.post(f"/api/v1/incidents/{inc['id']}/wall-mode", json={"on": True}, headers=lead), 409)
    assert_error(client.post(f"/api/v1/incidents/{inc['id']}/activate", headers=login(client, "dispatcher")), 403)
    assert client.post(f"/api/v1/incidents/{inc['id']}/activate", headers=lead).status_code == 200
    assert_error(client.post(f"/api/v1/incidents/{inc['id']}/activate", headers=lead), 409)
    assert_error(client.patch(f"/api/v1/incidents/{inc['id']}/tasks/99999", json={"status": "done"},
                              headers=lead), 404)
    assert_error(client.post(f"/api/v1/incidents/{inc['id']}/reports", json={"text": ""}, headers=lead), 400)
    assert_error(client.get(f"/api/v1/incidents/{inc['id']}/report.pdf", headers=lead), 409, "not_closed")


def test_command_flow_over_http(client):
    lead = login(client, "leader")
    inc = client.post("/api/v1/incidents", json=direct(), headers=lead).json
    r = client.post(f"/api/v1/incidents/{inc['id']}/activate", headers=lead)
    assert r.status_code == 200 and r.json["status"] == "active" and r.json["tasks"]
    task = r.json["tasks"][0]
    insp = login(client, "inspector")
    r = client.post(f"/api/v1/incidents/{inc['id']}/reports", headers=insp,
                    json={"text": "积水深约40厘米", "photos": ["a.jpg"], "lat": inc["lat"], "lon": inc["lon"]})
    assert r.status_code == 201 and r.json["type"] == "incident.report"
    r = client.post(f"/api/v1/incidents/{inc['id']}/orders", headers=login(client, "dispatcher"),
                    json={"text": "调两台泵车"})
    assert r.status_code == 201
    r = client.patch(f"/api/v1/incidents/{inc['id']}/tasks/{task['id']}", headers=lead, json={"status": "done"})
    assert r.status_code == 200 and r.json["status"] == "done" and r.json["done_at"]
    r = client.get("/api/v1/incidents/active", headers=insp)
    assert r.json["incident"]["id"] == inc["id"] and r.json["incident"]["units"]
    r = client.post(f"/api/v1/incidents/{inc['id']}/wall-mode", json={"on": False}, headers=lead)
    assert r.status_code == 200 and r.json["wall_mode"] is False
    assert client.get("/api/v1/incidents/active", headers=insp).json["incident"] is None
    r = client.post(f"/api/v1/incidents/{inc['id']}/close", json={"summary": "积水已排除"}, headers=lead)
    assert r.status_code == 200 and r.json["status"] == "closed"
    html = client.get(f"/api/v1/incidents/{inc['id']}/report.html", headers=insp)
    assert html.status_code == 200 and "积水深约40厘米" in html.get_data(as_text=True)
    pdf = client.get(f"/api/v1/incidents/{inc['id']}/report.pdf", headers=insp)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    timeline = client.get(f"/api/v1/incidents/{inc['id']}/timeline", headers=insp).json["timeline"]
    actions = [e["action"] for e in timeline]
    assert actions[:2] == ["raised", "activated"] and "closed" in actions and "mode" in actions
    r = client.get("/api/v1/audit/verify", headers=lead)
    assert r.status_code == 200 and r.json["ok"] is True


def test_plans_are_listed(client):
    r = client.get("/api/v1/emergency/plans?type=gas_leak", headers=login(client, "dispatcher"))
    assert [p["level"] for p in r.json["plans"]] == ["I", "II", "III", "IV"]
    assert r.json["levels"]["I"] == "特别重大"
