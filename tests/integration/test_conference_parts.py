"""Parts of the conference MCU in-process: layouts, tokens, rate limit, mix-minus, compositor, events."""
from __future__ import annotations

import asyncio
import json
import time

import av
import numpy as np
import pytest
import redis

from streams.conference import layout
from streams.conference.compositor import Compositor, Tile, TileSource
from streams.conference.events import STREAM, EventPublisher, event
from streams.conference.mixer import AudioInput, AudioMixer, mix_minus, to_mono
from streams.conference.tokens import InvitationError, InvitationVerifier, RateLimiter, make_token

SECRET = "parts-secret"


# -- layout ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(1, 13))
@pytest.mark.parametrize("name", layout.LAYOUTS)
def test_tiles_fit_the_picture_without_overlap_and_are_even(name, n):
    rects = layout.compute(name, n)
    assert len(rects) == n
    covered = np.zeros((layout.HEIGHT, layout.WIDTH), np.uint8)
    for r in rects:
        assert r.x % 2 == r.y % 2 == r.w % 2 == r.h % 2 == 0, r
        assert r.x >= 0 and r.y >= 0 and r.x + r.w <= layout.WIDTH and r.y + r.h <= layout.HEIGHT, r
        covered[r.y: r.y + r.h, r.x: r.x + r.w] += 1
    assert covered.max() == 1, "tiles overlap"


def test_speaker_tile_is_the_largest():
    rects = layout.speaker_rects(9)
    assert rects[0].w * rects[0].h > 4 * max(r.w * r.h for r in rects[1:])
    assert layout.grid_rects(4) == [layout.Rect(0, 0, 640, 360), layout.Rect(640, 0, 640, 360),
                                    layout.Rect(0, 360, 640, 360), layout.Rect(640, 360, 640, 360)]


def test_unknown_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown layout 'mosaic'"):
        layout.compute("mosaic", 3)


def test_fit_keeps_the_aspect_ratio():
    inner = layout.fit(480, 640, layout.Rect(0, 0, 640, 360))  # a phone held upright
    assert inner.h == 360 and abs(inner.w - 270) <= 2 and inner.x > 0


# -- tokens and rate limit ------------------------------------------------------------------------
def test_invitation_round_trip_and_rejections():
    verifier = InvitationVerifier(SECRET)
    inv = verifier.load(make_token(SECRET, "r1", "u7", "张三", leader=True))
    assert (inv.room, inv.pid, inv.name, inv.leader) == ("r1", "u7", "张三", True)
    with pytest.raises(InvitationError, match="not valid"):
        verifier.load(make_token("another-secret", "r1", "u7", "x"))
    with pytest.raises(InvitationError, match="required"):
        verifier.load(None)
    from itsdangerous import URLSafeTimedSerializer
    login_token = URLSafeTimedSerializer(SECRET, salt="citywall-auth").dumps({"user": 1})
    with pytest.raises(InvitationError):
        verifier.load(login_token)  # a login token is not an invitation (different salt)
    with pytest.raises(InvitationError, match="expired"):
        InvitationVerifier(SECRET, max_age=-1).load(make_token(SECRET, "r1", "u7", "x"))


def test_rate_limiter_counts_per_key_in_a_sliding_window():
    now = [0.0]
    limiter = RateLimiter(3, 60.0, clock=lambda: now[0])
    assert [limiter.allow(("r", "a")) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(("r", "b")) and limiter.allow(("other", "a"))
    now[0] = 61.0
    assert limiter.allow(("r", "a"))
    with pytest.raises(ValueError):
        RateLimiter(0)


# -- audio ----------------------------------------------------------------------------------------
def tone(freq: float, amp: int = 8000) -> np.ndarray:
    t = np.arange(960) / 48000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_mix_minus_everyone_hears_everyone_but_themselves():
    a, b = tone(440), tone(700)
    mixes = mix_minus({"a": a, "b": b, "c": None})
    assert np.array_equal(mixes["a"], b)
    assert np.array_equal(mixes["b"], a)
    assert np.array_equal(mixes["c"], (a.astype(np.int32) + b).astype(np.int16))
    loud = np.full(960, 30000, np.int16)
    assert mix_minus({"x": loud, "y": loud, "z": None})["z"].max() == 32767  # clipped, not wrapped


def test_mixer_thread_excludes_own_voice_and_muted_participants():
    delivered: dict[str, list] = {"a": [], "b": [], "c": []}
    mixer = AudioMixer(lambda pid, frame: delivered[pid].append(frame.to_ndarray()[0].copy()))
    inputs = {pid: mixer.add(pid) for pid in "abc"}
    inputs["a"].push(tone(440))
    mixer.tick()
    assert np.abs(delivered["a"][-1]).max() == 0, "a hears itself"
    assert np.abs(delivered["b"][-1]).max() > 7000 and np.abs(delivered["c"][-1]).max() > 7000
    inputs["a"].muted = True
    inputs["a"].push(tone(440))
    mixer.tick()
    assert np.abs(delivered["b"][-1]).max() == 0, "a muted participant is still heard"


def test_audio_input_bounds_its_latency_and_pads_with_silence():
    audio = AudioInput(max_buffer_ms=60)
    for _ in range(10):
        audio.push(tone(300))
    assert audio.dropped > 0
    assert audio.take() is not None
    small = AudioInput()
    small.push(np.ones(100, np.int16))
    out = small.take()
    assert len(out) == 960 and out[:100].sum() == 100 and out[100:].sum() == 0
    assert small.take() is None


def test_to_mono_accepts_aiortc_stereo_frames_and_rejects_other_rates():
    stereo = np.stack([tone(440), tone(440)], axis=1).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48000
    assert np.array_equal(to_mono(frame), tone(440))
    frame.sample_rate = 8000
    with pytest.raises(ValueError, match="48000"):
        to_mono(frame)


# -- compositor -----------------------------------------------------------------------------------
def solid(y: int, u: int, v: int, w: int = 640, h: int = 360) -> av.VideoFrame:
    planes = np.concatenate([np.full(w * h, y, np.uint8), np.full(w * h // 4, u, np.uint8),
                             np.full(w * h // 4, v, np.uint8)]).reshape(h * 3 // 2, w)
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def test_compositor_places_each_participant_in_its_tile_and_encodes_720p():
    packets: list = []
    comp = Compositor(packets.extend, fps=25)
    sources = [TileSource(n) for n in ("red", "green", "blue")]
    for source, yuv in zip(sources, [(81, 90, 240), (145, 54, 34), (41, 240, 110)]):
        source.put(solid(*yuv))
    rects = layout.compute("grid", 3)
    comp.set_tiles([Tile(s, r) for s, r in zip(sources, rects)])
    comp.compose()
    for rect, expected in zip(rects, (81, 145, 41)):
        inner = layout.fit(640, 360, rect)
        centre = comp.canvas.y[inner.y + inner.h // 2, inner.x + inner.w // 2]
        assert abs(int(centre) - expected) <= 2, (rect, centre)
    sources[1].frame = None  # a participant without video yet: an empty tile
    comp.compose()
    r = rects[1]
    assert comp.canvas.y[r.y + r.h // 2, r.x + r.w // 2] == 40
    data = comp.encoder.encode_i420(comp.canvas.as_array(), force_keyframe=True)
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for d, _, _ in data for f in decoder.decode(av.Packet(d))]
    frames += list(decoder.decode(None))
    assert frames and (frames[0].width, frames[0].height) == (1280, 720)


def test_compositor_thread_paces_itself_and_forces_keyframes():
    got: list = []
    comp = Compositor(got.extend, fps=25)
    source = TileSource("one")
    source.put(solid(120, 128, 128))
    comp.set_tiles([Tile(source, layout.Rect(0, 0, 1280, 720))])
    comp.start()
    try:
        time.sleep(1.2)
        count = comp.frames_out
        assert 20 <= count <= 35, f"{count} frames in 1.2 s at 25 fps"
        keys_before = sum(1 for _, _, k in got if k)
        comp.request_keyframe()
        time.sleep(0.2)
        assert sum(1 for _, _, k in got if k) > keys_before
    finally:
        comp.stop()
        comp.join(2)


# -- events ---------------------------------------------------------------------------------------
def test_events_are_added_to_the_redis_stream():
    url = "redis://127.0.0.1:6379/5"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError:
        pytest.fail("no Redis on 127.0.0.1:6379 (make test starts it)")
    room = f"parts-{time.time_ns()}"

    async def go() -> None:
        publisher = EventPublisher(url)
        publisher.start()
        publisher.publish(event("conference.join", room, "p1", "张三"))
        publisher.publish(event("conference.leave", room, "p1", "张三", reason="leave"))
        await asyncio.sleep(0.5)
        await publisher.close()

    asyncio.run(go())
    mine = [json.loads(fields[b"data"]) for _, fields in client.xrange(STREAM)
            if json.loads(fields[b"data"])["room"] == room]
    client.close()
    assert [e["type"] for e in mine] == ["conference.join", "conference.leave"]
    assert mine[0]["participant"] == "p1" and mine[0]["name"] == "张三" and mine[0]["at"].endswith("Z")


def test_events_without_redis_do_not_fail():
    async def go() -> int:
        publisher = EventPublisher("redis://127.0.0.1:1/0")
        publisher.start()
        publisher.publish(event("conference.join", "r", "p", "n"))
        await asyncio.sleep(0.3)
        await publisher.close()
        return publisher.dropped

    assert asyncio.run(go()) == 1
