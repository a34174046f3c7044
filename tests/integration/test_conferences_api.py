"""Video conference rooms over HTTP (/api/v1/conferences), on SQLite and PostgreSQL."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import URLSafeTimedSerializer

from backend.web import create_app
from tests import support


@pytest.fixture
def client(store):
    app = create_app(store, screens=False)
    with app.test_client() as c:
        c.store = store
        yield c
    store.outbox.stop()


def login(client, username: str) -> dict:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": support.PASSWORD})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def assert_error(r, status: int):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert set(r.json["error"]) == {"code", "message", "details"}


def decode(url: str) -> dict:
    token = parse_qs(urlsplit(url).query)["token"][0]
    # the secret of the test config (support.make_config): the streams service checks with the same one
    return URLSafeTimedSerializer("test-secret", salt="citywall-conference").loads(token, max_age=3600)


def roads_dept(client) -> int:
    return next(d["id"] for d in client.store.departments.values() if d["code"] == "roads")


def test_create_answers_a_join_url_per_invitee_with_a_token_for_that_participant(client):
    lead = login(client, "leader")
    body = {"title": "防汛会商", "scheduled_at": "2026-11-26T15:00:00+08:00", "invitees": [
        {"name": "道路抢修", "department_id": roads_dept(client), "leader": False},
        {"name": "值班长", "username": "supervisor", "leader": True}]}
    r = client.post("/api/v1/conferences", json=body, headers=lead | {"Host": "hall.example:8050"})
    assert r.status_code == 201, r.json
    room = r.json
    assert room["title"] == "防汛会商" and room["scheduled_at"] == "2026-11-26T07:00:00Z"
    assert r.headers["Location"].endswith(f"/conferences/{room['id']}")
    assert len(room["invitees"]) == 2 and len({p["pid"] for p in room["invitees"]}) == 2
    for person, asked in zip(room["invitees"], body["invitees"]):
        url = urlsplit(person["join_url"])
        assert (url.scheme, url.hostname, url.port) == ("http", "hall.example", client.store.config.streams_port)
        assert url.path == "/streams/v1/conference/join"
        claims = decode(person["join_url"])
        assert claims == {"room": str(room["id"]), "pid": person["pid"], "name": asked["name"],
                          "leader": asked["leader"]}
    assert decode(room["host"]["join_url"])["leader"] is True and room["host"]["username"] == "leader"
    r = client.get("/api/v1/conferences", headers=lead)
    assert [c["id"] for c in r.json["items"]] == [room["id"]]
    r = client.get(f"/api/v1/conferences/{room['id']}", headers=lead)
    assert [p["pid"] for p in r.json["invitees"]] == [p["pid"] for p in room["invitees"]]


def test_an_invitee_sees_only_their_own_link_and_others_see_nothing(client):
    lead = login(client, "leader")
    room = client.post("/api/v1/conferences", headers=lead, json={"title": "会商", "invitees": [
        {"name": "道路抢修", "department_id": roads_dept(client)}, {"username": "supervisor"}]}).json
    r = client.get(f"/api/v1/conferences/{room['id']}", headers=login(client, "dept_roads"))
    assert r.status_code == 200
    links = {p["name"]: "join_url" in p for p in r.json["invitees"]}
    assert links == {"道路抢修": True, "supervisor": False}
    assert decode(r.json["invitees"][0]["join_url"])["pid"] == room["invitees"][0]["pid"]
    assert [c["id"] for c in client.get("/api/v1/conferences", headers=login(client, "supervisor")).json["items"]] \
        == [room["id"]]
    insp = login(client, "inspector")
    assert_error(client.get(f"/api/v1/conferences/{room['id']}", headers=insp), 404)
    assert client.get("/api/v1/conferences", headers=insp).json["items"] == []


def test_bad_requests(client):
    lead = login(client, "leader")
    ok = {"title": "会商", "invitees": [{"username": "supervisor"}]}
    assert_error(client.post("/api/v1/conferences", json=ok, headers=login(client, "dispatcher")), 403)
    assert_error(client.post("/api/v1/conferences", json=ok), 401)
    for bad in ({"title": ""}, {"invitees": []}, {"invitees": [{"username": "ghost"}]},
                {"invitees": [{"username": "supervisor", "department_id": 1}]}, {"invitees": [{"name": "x"}]},
                {"invitees": [{"department_id": 99999}]}, {"invitees": [{"username": "supervisor", "leader": "yes"}]},
                {"scheduled_at": "tomorrow"}, {"colour": "red"}):
        assert_error(client.post("/api/v1/conferences", json=ok | bad, headers=lead), 400)
    assert_error(client.post("/api/v1/conferences", json=ok | {"incident_id": 99999}, headers=lead), 404)
    assert_error(client.get("/api/v1/conferences/99999", headers=lead), 404)
    assert_error(client.get("/api/v1/conferences/x", headers=lead), 404)
