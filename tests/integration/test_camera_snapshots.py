"""Snapshots and reports from a camera, through the backend API and a real streams service."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from backend.services import cameras
from backend.web import create_app
from streams.testing.harness import StreamsProcess
from tests import support


@pytest.fixture
def wired(sqlite_store):
    lat, lon = support.inside(2, 2)
    cam = cameras.create({"name": "东单路口", "lat": lat, "lon": lon, "source": "synthetic:东单?size=320x180&fps=10"})
    svc = StreamsProcess([{"id": cam["id"], "name": cam["name"], "lat": lat, "lon": lon, "grid_code": cam["grid_code"],
                           "source": "synthetic:东单?size=320x180&fps=10"}],
                         env={"CITYWALL_DEMO": "1", "CITYWALL_STREAMS_LINGER": "2"}).start()
    sqlite_store.config = dataclasses.replace(sqlite_store.config, streams_port=svc.port)
    app = create_app(sqlite_store)
    with app.test_client() as client:
        yield client, cam, svc
    sqlite_store.outbox.stop()
    svc.stop()


def _login(client, user: str) -> dict:
    token = client.post("/api/v1/auth/token", json={"username": user, "password": support.PASSWORD}).json["token"]
    return {"Authorization": f"Bearer {token}"}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img.shape[1], img.shape[0]


def test_snapshot_and_report_from_a_camera(wired):
    client, cam, svc = wired
    h = _login(client, "operator")
    r = client.get(f"/api/v1/cameras/{cam['id']}/snapshot.jpg", headers=h)
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert _jpeg_size(r.data) == (320, 180)
    r = client.post(f"/api/v1/cameras/{cam['id']}/report", json={"class_code": "E0505", "description": "路口机动车乱停放"},
                    headers=h)
    assert r.status_code == 201, r.json
    case = r.json
    assert case["source"] == "video" and case["status"] == "reported" and case["address"] == "东单路口"
    assert case["grid_code"] == cam["grid_code"] and len(case["photos"]) == 1
    photo = client.get(case["photos"][0], headers=h)
    assert photo.status_code == 200 and _jpeg_size(photo.data) == (320, 180)
    # the snapshot as evidence on an existing case: a photo more, an event on the timeline
    r = client.post(f"/api/v1/cases/{case['id']}/evidence", json={"camera_id": cam["id"]}, headers=h)
    assert r.status_code == 200, r.json
    assert len(r.json["photos"]) == 2 and r.json["status"] == "reported"
    timeline = client.get(f"/api/v1/cases/{case['id']}", headers=h).json["timeline"]
    assert timeline[-1]["action"] == "evidence" and timeline[-1]["payload"]["photo"] == r.json["photos"][1]
    assert client.post(f"/api/v1/cases/{case['id']}/evidence", json={"camera_id": "x"}, headers=h).status_code == 400
    # no token: no snapshot; the streams service gone: a clear 503
    assert client.get(f"/api/v1/cameras/{cam['id']}/snapshot.jpg").status_code == 401
    svc.stop()
    r = client.get(f"/api/v1/cameras/{cam['id']}/snapshot.jpg", headers=h)
    assert r.status_code == 503 and r.json["error"]["code"] == "streams_unavailable"
