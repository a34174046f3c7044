"""The streams service's parts: H.264 helpers, barcode, encoder, viewer queue, directories, auth."""
from __future__ import annotations

import asyncio
import json
import time

import av
import cv2
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from streams.auth import DefaultVerifier, token_from
from streams.cameras import CameraInfo, DbCameraDirectory, StaticCameraDirectory, demo_cameras
from streams.encoder import H264Encoder
from streams.h264 import ParameterSets, is_keyframe, nal_types, split_nals
from streams.relay import CameraFeed, PacketTrack
from streams.sources import open_source, parse_synthetic
from streams.synthetic import StreetScene, decode_barcode

SPS = b"\x67\x42\xc0\x1e\xaa"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00"
P_SLICE = b"\x41\x9a\x00"


def annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def test_split_nals_handles_3_and_4_byte_start_codes():
    data = b"\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS + b"\x00\x00\x01" + IDR
    assert split_nals(data) == [SPS, PPS, IDR]
    assert nal_types(data) == [7, 8, 5]
    assert is_keyframe(data) and not is_keyframe(annexb(P_SLICE))
    with pytest.raises(ValueError, match="start code"):
        split_nals(b"\x12\x34")
    assert nal_types(b"garbage") == []


def test_parameter_sets_are_put_back_in_front_of_a_bare_idr():
    params = ParameterSets()
    params.learn(annexb(SPS, PPS))
    data, key = params.complete(annexb(IDR))
    assert key and nal_types(data) == [7, 8, 5]
    data, key = params.complete(annexb(P_SLICE))
    assert not key and nal_types(data) == [1]
    already, _ = params.complete(annexb(SPS, PPS, IDR))
    assert nal_types(already) == [7, 8, 5]


def test_encoded_synthetic_frame_decodes_with_a_readable_timestamp():
    scene = StreetScene("T", 640, 360)
    encoder = H264Encoder(640, 360, 25)
    decoder = av.CodecContext.create("h264", "r")
    stamp = time.time()
    out = encoder.encode_i420(cv2.cvtColor(scene.draw(stamp), cv2.COLOR_BGR2YUV_I420))
    assert len(out) == 1
    data, pts, key = out[0]
    assert key and nal_types(data)[:2] == [7, 8]  # SPS/PPS in-band before the IDR
    frames = decoder.decode(av.Packet(data))
    image = frames[0].to_ndarray(format="bgr24")
    assert image.shape == (360, 640, 3)
    assert decode_barcode(image) == int(stamp * 1000) & ((1 << 40) - 1)
    # the second frame is not a keyframe; a forced one is
    second = encoder.encode_i420(cv2.cvtColor(scene.draw(), cv2.COLOR_BGR2YUV_I420))
    forced = encoder.encode_i420(cv2.cvtColor(scene.draw(), cv2.COLOR_BGR2YUV_I420), force_keyframe=True)
    assert not second[0][2] and forced[0][2] and is_keyframe(forced[0][0])


def test_barcode_rejects_a_damaged_code():
    scene = StreetScene("T", 320, 180)
    image = scene.draw(1_700_000_000.123)
    assert decode_barcode(image) == 1_700_000_000_123 & ((1 << 40) - 1)
    image[5:7, 8:60] = 255 - image[5:7, 8:60]  # flip some cells
    cell = 4
    image[cell:cell * 2, cell * 3:cell * 4] = 255 - image[cell:cell * 2, cell * 3:cell * 4]
    assert decode_barcode(image) is None


def test_synthetic_source_strings():
    spec = parse_synthetic("synthetic:CAM-1?size=1280x720&fps=25")
    assert (spec.name, spec.width, spec.height, spec.fps) == ("CAM-1", 1280, 720, 25)
    assert parse_synthetic("synthetic:X").width == 640
    for bad, message in [("synthetic:", "needs a name"), ("synthetic:X?size=big", "size"),
                         ("synthetic:X?size=641x360", "even"), ("synthetic:X?fps=0", "fps"),
                         ("synthetic:X?fps=a", "fps")]:
        with pytest.raises(ValueError, match=message):
            parse_synthetic(bad)
    with pytest.raises(ValueError, match="unknown camera source"):
        open_source("http://example/cam.jpg")
    assert open_source("rtsp://10.0.0.1/live").kind == "rtsp"
    assert open_source("/var/video/loop.ts").kind == "file"


class _FakeFeed:
    def __init__(self) -> None:
        self.keyframe_requests = 0
        self.overflows = 0
        self.unsubscribed = []

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def unsubscribe(self, track) -> None:
        self.unsubscribed.append(track)


def _packet(n: int) -> av.Packet:
    p = av.Packet(bytes([n % 256]) * 4)
    p.pts = n
    return p


def test_viewer_queue_gates_on_keyframe_and_flushes_on_overflow():
    async def scenario():
        feed = _FakeFeed()
        track = PacketTrack(feed, max_queue=3)  # type: ignore[arg-type]
        track.push(_packet(0), False)  # before any keyframe: dropped
        track.push(_packet(1), True)
        track.push(_packet(2), False)
        assert (await track.recv()).pts == 1
        assert (await track.recv()).pts == 2
        for n in range(3, 6):
            track.push(_packet(n), False)
        track.push(_packet(6), False)  # overflow: flush, wait for the next keyframe
        assert track.overflows == 1 and feed.keyframe_requests == 1
        track.push(_packet(7), False)
        track.push(_packet(8), True)
        assert (await track.recv()).pts == 8
        track.resync()  # source reopened: wait for its keyframe again
        track.push(_packet(9), False)
        track.push(_packet(10), True)
        assert (await track.recv()).pts == 10
        track.stop()
        assert feed.unsubscribed == [track]
        from aiortc.mediastreams import MediaStreamError

        with pytest.raises(MediaStreamError):
            await track.recv()

    asyncio.run(scenario())


def test_feed_starts_with_first_viewer_and_stops_after_linger():
    camera = CameraInfo(1, "T", 30.0, 120.0, None, "synthetic:T?size=320x180&fps=25")
    changes: list[tuple[str, int]] = []

    async def scenario():
        feed = CameraFeed(camera, linger=0.3, on_change=lambda f: changes.append((f.state, f.viewers)))
        assert feed.state == "idle"
        track = feed.subscribe()
        packet = await asyncio.wait_for(track.recv(), 5)
        assert is_keyframe(bytes(packet)) and feed.state == "online"
        track.stop()
        await asyncio.sleep(0.1)
        assert feed.state == "online"
        await asyncio.sleep(0.6)
        assert feed.state == "idle"
        await feed.close()

    asyncio.run(scenario())
    assert ("online", 1) in changes and changes[-1] == ("idle", 0)


def test_camera_file_directory(tmp_path):
    path = tmp_path / "cams.json"
    path.write_text(json.dumps([{"id": 2, "name": "B", "lat": 30.1, "lon": 120.1, "source": "synthetic:B"},
                                {"id": 1, "name": "A", "lat": 30.0, "lon": 120.0, "grid_code": "330102001001001",
                                 "source": "rtsp://cam/a", "status": "disabled"}]))
    directory = StaticCameraDirectory.from_json_file(path)
    assert [c.id for c in directory.list_cameras()] == [1, 2]
    assert directory.get(1).status == "disabled" and directory.get(3) is None
    assert "source" not in directory.get(1).public()
    for content, message in [("[{\"id\": 1}]", "missing the field 'name'"), ("{", "not valid JSON"),
                             ("{\"a\": 1}", "must hold a list"),
                             ('[{"id": 1, "name": "A", "source": "x", "status": "on"}]', "status must be"),
                             ('[{"id": 1, "name": "A", "source": "x", "lat": 95}]', "out of range"),
                             ('[{"id": 1, "name": "A", "source": "x"}, {"id": 1, "name": "B", "source": "y"}]',
                              "duplicate camera id 1")]:
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            StaticCameraDirectory.from_json_file(path)
    with pytest.raises(ValueError, match="cannot read"):
        StaticCameraDirectory.from_json_file(tmp_path / "missing.json")


def test_demo_city_has_a_dozen_synthetic_corner_cameras():
    cams = demo_cameras()
    assert len(cams) >= 12
    assert len({c.id for c in cams}) == len(cams)
    assert all(c.source.startswith("synthetic:") and len(c.grid_code) == 15 for c in cams)
    for c in cams:
        open_source(c.source)  # every demo source parses


def test_db_directory_reads_the_camera_table():
    from streams.models import Base, Camera

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[Camera.__table__])
    with Session(engine) as session:
        session.add_all([Camera(id=5, name="East gate", lat=30.2, lon=120.2, grid_code="330102001001001",
                                source="synthetic:E"),
                         Camera(id=6, name="West gate", lat=30.3, lon=120.1, source="rtsp://x/y",
                                status="disabled")])
        session.commit()
    directory = DbCameraDirectory(engine)
    assert [c.name for c in directory.list_cameras()] == ["East gate", "West gate"]
    east = directory.get(5)
    assert east.status == "active" and east.grid_code == "330102001001001"
    assert directory.get(6).status == "disabled" and directory.get(7) is None


def test_default_verifier():
    signed = URLSafeTimedSerializer("s3cret", salt="citywall-auth").dumps({"uid": 1})
    wrong_salt = URLSafeTimedSerializer("s3cret", salt="other").dumps({"uid": 1})
    strict = DefaultVerifier("s3cret", "screen-token", demo=False)
    assert strict("screen-token") and strict(signed)
    assert not strict(None) and not strict("") and not strict("screen-tokenx") and not strict(wrong_salt)
    expired = DefaultVerifier("s3cret", "", demo=False, max_age=-1)
    assert not expired(signed)
    assert not DefaultVerifier("", "", demo=False)(signed)  # no secret: only the screen token works
    assert DefaultVerifier(demo=True)(None)
    assert token_from({"Authorization": "Bearer abc"}, {}) == "abc"
    assert token_from({}, {"token": "q"}) == "q"
    assert token_from({}, {}) is None


def test_service_picks_its_camera_directory(tmp_path, monkeypatch):
    from backend import config as config_module
    from streams.__main__ import load_directory
    from streams.models import Base, Camera

    monkeypatch.delenv("CITYWALL_STREAMS_CAMERAS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CITYWALL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CITYWALL_DEMO", "1")
    assert len(load_directory(config_module.load()).list_cameras()) == len(demo_cameras())  # no database yet

    engine = create_engine(f"sqlite:///{tmp_path / 'citywall.db'}")
    Base.metadata.create_all(engine, tables=[Camera.__table__])
    with Session(engine) as session:
        session.add(Camera(id=42, name="DB cam", lat=30.0, lon=120.0, source="synthetic:DB"))
        session.commit()
    directory = load_directory(config_module.load())
    assert isinstance(directory, DbCameraDirectory) and [c.id for c in directory.list_cameras()] == [42]

    path = tmp_path / "cams.json"
    path.write_text('[{"id": 9, "name": "File cam", "source": "synthetic:F"}]')
    monkeypatch.setenv("CITYWALL_STREAMS_CAMERAS", str(path))
    assert [c.id for c in load_directory(config_module.load()).list_cameras()] == [9]
