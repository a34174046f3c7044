"""The screens on the web app: access control, CSRF, console login, photo upload and Socket.IO replay."""
from __future__ import annotations

import base64
import re
import time

import pytest

from backend import realtime
from backend.services import cases
from backend.services.context import Context, use
from backend.web import create_app
from tests import support
from tests.conftest import actor, new_case

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@pytest.fixture
def app(sqlite_store):
    application = create_app(sqlite_store)
    application.config["TESTING"] = True
    yield application
    if realtime.bridge() is not None:
        realtime.bridge().stop()


def login(client, username: str, password: str = support.PASSWORD):
    page = client.get("/console/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    resp = client.post("/console/login", data={"username": username, "password": password, "csrf": csrf,
                                               "next": "/console/"})
    cookie = client.get_cookie("_csrf_token")  # a new session (and token) after a login
    return resp, cookie.value if cookie is not None else None


def test_open_wall_serves_page_state_and_layers_and_keeps_api_404s(app):
    c = app.test_client()
    new_case()
    assert c.get("/").status_code == 200
    st = c.get("/wall/api/state").get_json()
    assert len(st["cases"]["id"]) == 1 and "kpi" in st and "ranking" in st
    assert c.get("/wall/api/layers/grids").get_json()["features"]
    assert c.get("/wall/api/layers/secrets").status_code == 404
    unknown = c.get("/api/v1/no-such-thing")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"


def test_token_wall_needs_the_screen_token(tmp_path, sqlite_store):
    cfg = support.make_config(tmp_path, sqlite_store.config.effective_database_url, sqlite_store.config.redis_url,
                              wall_access="token", screen_token="hall-secret")
    ctx = Context.from_config(cfg)
    try:
        c = create_app(ctx).test_client()
        assert c.get("/wall/api/state").status_code == 401
        assert c.get("/wall/api/state?token=wrong").status_code == 401
        assert c.get("/?token=hall-secret").status_code == 200
        assert c.get("/wall/api/state").status_code == 200  # the session remembers the screen
    finally:
        ctx.close()
        use(sqlite_store)


def test_login_wall_redirects_to_the_console_login(tmp_path, sqlite_store):
    cfg = support.make_config(tmp_path, sqlite_store.config.effective_database_url, sqlite_store.config.redis_url,
                              wall_access="login")
    ctx = Context.from_config(cfg)
    try:
        c = create_app(ctx).test_client()
        resp = c.get("/")
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/console/login")
        login(c, "leader")
        assert c.get("/wall/api/state").status_code == 200
    finally:
        ctx.close()
        use(sqlite_store)


def test_console_requires_login_and_refuses_wrong_passwords(app):
    c = app.test_client()
    resp = c.get("/console/")
    assert resp.status_code == 302 and "/console/login" in resp.headers["Location"]
    assert c.get("/console/api/state").status_code == 401
    resp, _ = login(c, "dispatcher", "wrong")
    assert resp.status_code == 401 and "wrong username or password" in resp.get_data(as_text=True)
    resp, _ = login(c, "dispatcher")
    assert resp.status_code == 302 and resp.headers["Location"] == "/console/"
    assert c.get("/console/").status_code == 200


def test_login_form_without_its_csrf_token_is_refused(app):
    c = app.test_client()
    c.get("/console/login")
    resp = c.post("/console/login", data={"username": "dispatcher", "password": support.PASSWORD})
    assert resp.status_code == 400


def test_console_callbacks_need_the_csrf_header(app):
    c = app.test_client()
    _resp, csrf = login(c, "dispatcher")
    assert c.post("/console/_dash-update-component", json={}).status_code == 403
    assert c.post("/console/_dash-update-component", json={},
                  headers={"X-CSRFToken": "forged"}).status_code == 403
    # with the token, the request reaches Dash (which then rejects the empty body itself)
    assert c.post("/console/_dash-update-component", json={}, headers={"X-CSRFToken": csrf}).status_code != 403


def test_department_console_state_holds_only_its_cases(app):
    a = new_case()
    new_case()
    cases.apply(a["id"], "register", actor("supervisor"))
    dispatched = cases.apply(a["id"], "dispatch", actor("dispatcher"))
    assert dispatched["department_name"] == "环卫部门"
    c = app.test_client()
    login(c, "dept_sanitation")
    st = c.get("/console/api/state").get_json()
    assert st["cases"]["id"] == [a["id"]]
    other = app.test_client()
    login(other, "dept_roads")
    assert other.get("/console/api/state").get_json()["cases"]["id"] == []


def test_photo_upload_accepts_images_only(app):
    c = app.test_client()
    _resp, csrf = login(c, "dept_sanitation")
    h = {"X-CSRFToken": csrf}
    bad = c.post("/console/api/photos", headers=h, data={"photo": (__import__("io").BytesIO(b"<html>"), "x.png")})
    assert bad.status_code == 400
    ok = c.post("/console/api/photos", headers=h, data={"photo": (__import__("io").BytesIO(PNG), "x.png")})
    assert ok.status_code == 201
    url = ok.get_json()["url"]
    assert url.startswith("/api/v1/files/") and url.endswith(".png")
    got = c.get(url)
    assert got.status_code == 200 and got.data == PNG and got.mimetype == "image/png"
    assert c.post("/console/api/photos", data={"photo": (__import__("io").BytesIO(PNG), "x.png")}).status_code == 403
    assert app.test_client().get(url).status_code == 401


def test_socket_hello_replays_the_events_after_the_screens_state(app, sqlite_store):
    first = new_case()
    sqlite_store.outbox.flush()
    seen = realtime.wall.last_event_id()
    second = new_case()
    cases.apply(second["id"], "register", actor("supervisor"))
    sqlite_store.outbox.flush()
    client = realtime.socketio.test_client(app, auth={"kind": "wall"})
    assert client.is_connected()
    ack = client.emit("hello", {"after": seen, "screen": "hall-1"}, callback=True)
    assert "wall" in ack["rooms"] and "screen:hall-1" in ack["rooms"]
    deadline = time.monotonic() + 5
    events = []
    while time.monotonic() < deadline and len(events) < 2:
        events += [e for msg in client.get_received() if msg["name"] == "events" for e in msg["args"][0]["events"]]
        time.sleep(0.05)
    assert [(e["a"], e["c"]["id"]) for e in events[:2]] == [("create", second["id"]), ("register", second["id"])]
    assert all(e["c"]["id"] != first["id"] for e in events)
    client.disconnect()


def test_console_socket_needs_a_session(app):
    client = realtime.socketio.test_client(app, auth={"kind": "console"})
    assert not client.is_connected()


def test_json_answers_stay_compact_utf8_and_encode_what_orjson_refuses(app):
    """The API's JSON is encoded with orjson, byte for byte what Flask's encoder gave: compact, Chinese as
    UTF-8, integer keys as strings, dates as HTTP dates, and integers beyond 64 bits through the fallback."""
    from datetime import datetime, timezone

    from flask import jsonify

    with app.test_request_context():
        fast = jsonify({"name": "供水部门", "by_id": {1: "a"}, "ok": True, "x": 1.5, "none": None})
        slow = jsonify({"n": 2 ** 70, "at": datetime(2026, 11, 26, 8, 30, tzinfo=timezone.utc)})
    assert fast.get_data(as_text=True) == '{"name":"供水部门","by_id":{"1":"a"},"ok":true,"x":1.5,"none":null}\n'
    assert slow.get_data(as_text=True) == '{"n":1180591620717411303424,"at":"Thu, 26 Nov 2026 08:30:00 GMT"}\n'
    assert fast.mimetype == "application/json"


def test_an_api_call_without_cookies_gets_none_and_a_console_session_still_works(app):
    c = app.test_client()
    resp = c.get("/api/v1/health")
    assert resp.status_code == 200 and "Set-Cookie" not in resp.headers
    resp, _ = login(c, "leader")
    assert resp.status_code == 302
    assert c.get("/console/").status_code == 200  # the session cookie carried the login
