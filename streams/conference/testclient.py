"""aiortc participants of a conference, for tests and benchmarks (模拟参会终端).

    python -m streams.conference.testclient --base http://127.0.0.1:8060 --secret S --room R \\
        --participants 9 --warmup 5 --seconds 15

Each participant sends 640x360 H.264 with a large timestamp barcode (the idea of streams/synthetic.py,
with 12-pixel cells so it survives the down-scaling into a tile) and receives the composition over one
peer connection (POST .../join), and sends a 20 ms tone and receives its mix-minus audio over a second,
audio-only one (POST .../audio, answered by the audio worker process). To keep the load generator light,
one encoder feeds every sender (the server still decodes each participant's stream separately) and only
the first received video stream is decoded; the others only count assembled frames. The decoded one
gives latency: time of decoding minus the barcode of the speaker tile. Prints "measuring" when the
window starts and one JSON line at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import threading
import time
from fractions import Fraction

import aiohttp
import av
import cv2
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, rtcrtpreceiver
from aiortc.codecs import get_decoder as real_get_decoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streams.conference.service import newest_frame
from streams.conference.tokens import make_token
from streams.encoder import H264Encoder
from streams.synthetic import StreetScene, decode_barcode, draw_barcode

WIDE = 1152  # draw_barcode on this width uses 12-pixel cells
BAR_H, BAR_W = 36, 600


def draw_big_barcode(image: np.ndarray, epoch_ms: int) -> None:
    scratch = np.zeros((BAR_H, WIDE, 3), np.uint8)
    draw_barcode(scratch, epoch_ms)
    image[:BAR_H, :BAR_W] = scratch[:, :BAR_W]


def read_big_barcode(tile_bgr: np.ndarray) -> int | None:
    """The timestamp from a tile showing a 640x360 sender frame scaled to any size."""
    frame = cv2.resize(tile_bgr, (640, 360), interpolation=cv2.INTER_LINEAR)
    scratch = np.zeros((BAR_H, WIDE, 3), np.uint8)
    scratch[:, :BAR_W] = frame[:BAR_H, :BAR_W]
    return decode_barcode(scratch)


class SharedSource(threading.Thread):
    """Draws and encodes 640x360 frames at 25 fps once, for every sender track."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fps: int = 25) -> None:
        super().__init__(daemon=True, name="synthetic-sender")
        self.loop, self.fps = loop, fps
        self.scene = StreetScene("conference-bench", 640, 360)
        self.encoder = H264Encoder(640, 360, fps)
        self.tracks: list["SenderTrack"] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            next_at += 1 / self.fps
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            image = self.scene.draw(now)
            draw_big_barcode(image, int(now * 1000))
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
            for data, pts, key in self.encoder.encode(frame):
                try:
                    self.loop.call_soon_threadsafe(self._fan_out, data, pts, key)
                except RuntimeError:  # the loop closed: the run is over
                    return

    def _fan_out(self, data: bytes, pts: int, key: bool) -> None:
        for track in self.tracks:
            track.push(data, pts, key)


class SenderTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: collections.deque = collections.deque()
        self.ready = asyncio.Event()
        self.started = False
        self.overflows = 0

    def push(self, data: bytes, pts: int, key: bool) -> None:
        if len(self.queue) >= 12:  # the sender lags half a second: restart at the next keyframe
            self.queue.clear()
            self.started = False
            self.overflows += 1
        if not self.started and not key:
            return
        self.started = True
        packet = av.Packet(data)
        packet.pts = packet.dts = pts * 3600
        packet.time_base = Fraction(1, 90_000)
        self.queue.append(packet)
        self.ready.set()

    async def recv(self):
        while not self.queue:
            if self.readyState != "live":
                raise MediaStreamError
            self.ready.clear()
            await self.ready.wait()
        return self.queue.popleft()


class ToneTrack(MediaStreamTrack):
    """A sine tone, 20 ms frames paced by the wall clock."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: int = 6000) -> None:
        super().__init__()
        self.frequency, self.amplitude = frequency, amplitude
        self.pts = 0
        self.next_at: float | None = None

    async def recv(self):
        if self.next_at is None:
            self.next_at = time.monotonic()
        self.next_at += 0.02
        delay = self.next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (self.pts + np.arange(960)) / 48000
        samples = (self.amplitude * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.pts, Fraction(1, 48000)
        self.pts += 960
        return frame


class Counting:
    instances: list["Counting"] = []

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.frames = 0
        Counting.instances.append(self)

    def decode(self, encoded_frame) -> list:
        self.frames += 1
        return []


def decode_only_first(video: int = 1, audio: int = 1) -> None:
    """Patch aiortc so the first `video`/`audio` receive streams decode and the rest only count."""
    left = {"video": video, "audio": audio}

    def get_decoder(codec):
        kind = codec.mimeType.split("/")[0].lower()
        if left.get(kind, 0) > 0:
            left[kind] -= 1
            return real_get_decoder(codec)
        return Counting(kind)

    rtcrtpreceiver.get_decoder = get_decoder  # type: ignore[assignment]


class Participant:
    def __init__(self, base: str, room: str, token: str, video: SenderTrack, audio: ToneTrack | None) -> None:
        self.base, self.room, self.token = base, room, token
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.audio_pc: RTCPeerConnection | None = None
        self.audio_generation = 0
        self.video, self.audio = video, audio
        self.frames = 0
        self.audio_frames = 0
        self.audio_rms: list[float] = []
        self.latency_ms: list[float] = []
        self.sizes: set[tuple[int, int]] = set()
        self.tile: dict | None = None
        self.tasks: list[asyncio.Task] = []

    async def join(self, session: aiohttp.ClientSession) -> None:
        self.pc.addTransceiver(self.video, direction="sendrecv")

        @self.pc.on("track")
        def on_track(track) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with session.post(f"{self.base}/streams/v1/conferences/{self.room}/join",
                                json={"sdp": self.pc.localDescription.sdp, "type": "offer",
                                      "token": self.token}) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"join refused: {resp.status} {body}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        if self.audio is not None:
            await self.connect_audio(session)

    async def connect_audio(self, session: aiohttp.ClientSession) -> None:
        """(Re)open the audio-only connection to the audio worker (after a join or a worker restart)."""
        if self.audio_pc is not None:
            await self.audio_pc.close()
        pc = self.audio_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(self.audio, direction="sendrecv")

        @pc.on("track")
        def on_track(track) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track)))

        await pc.setLocalDescription(await pc.createOffer())
        async with session.post(f"{self.base}/streams/v1/conferences/{self.room}/audio",
                                json={"sdp": pc.localDescription.sdp, "type": "offer",
                                      "token": self.token}) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"audio refused: {resp.status} {body}")
        self.audio_generation = body["generation"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))

    async def _consume(self, track) -> None:
        try:
            while True:
                frame = await (track.recv() if track.kind == "audio" else newest_frame(track))
                if track.kind == "audio":
                    self.audio_frames += 1
                    data = frame.to_ndarray().astype(np.float32)
                    self.audio_rms.append(float(np.sqrt(np.mean(data ** 2))))
                    continue
                arrived = time.time()
                self.frames += 1
                self.sizes.add((frame.width, frame.height))
                if self.tile and self.frames % 5 == 0:
                    t = self.tile
                    image = frame.to_ndarray(format="bgr24")[t["y"]: t["y"] + t["h"], t["x"]: t["x"] + t["w"]]
                    stamp = read_big_barcode(image)
                    if stamp is not None:
                        delta = (int(arrived * 1000) - stamp) % (1 << 40)
                        if delta < 10_000:
                            self.latency_ms.append(delta)
        except MediaStreamError:
            return

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
        if self.audio_pc is not None:
            await self.audio_pc.close()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def run(base: str, secret: str, room: str, n: int, warmup: float, seconds: float,
              decode: int = 1, offset: int = 0, audio: bool = True) -> dict:
    decode_only_first(video=decode)
    loop = asyncio.get_running_loop()
    source = SharedSource(loop)
    people = []
    for i in range(n):
        track = SenderTrack()
        source.tracks.append(track)
        k = offset + i
        token = make_token(secret, room, f"bench-{k}", f"Bench {k}")
        people.append(Participant(base, room, token, track, ToneTrack(300 + 100 * k) if audio else None))
    source.start()
    async with aiohttp.ClientSession() as session:
        for person in people:
            await person.join(session)
        print("joined", flush=True)
        await asyncio.sleep(warmup)
        async with session.get(f"{base}/streams/v1/conferences/{room}",
                               headers={"Authorization": f"Bearer {people[0].token}"}) as resp:
            state = await resp.json()
        frames_in = {p["pid"]: p["frames_in"] for p in state["participants"]}
        tile = state["tiles"][0]
        for person in people:
            person.tile = tile
            person.latency_ms.clear()
        print("measuring", flush=True)
        counters = [c for c in Counting.instances if c.kind == "video"]
        sounds = [c for c in Counting.instances if c.kind == "audio"]
        before = [c.frames for c in counters] + [p.frames for p in people]
        audio_before = [c.frames for c in sounds] + [p.audio_frames for p in people]
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        after = [c.frames for c in counters] + [p.frames for p in people]
        audio_after = [c.frames for c in sounds] + [p.audio_frames for p in people]
        async with session.get(f"{base}/streams/v1/conferences/{room}",
                               headers={"Authorization": f"Bearer {people[0].token}"}) as resp:
            state = await resp.json()
    rates = sorted((a - b) / elapsed for a, b in zip(after, before) if a > 0)  # decoded or counted
    input_rates = [(p["frames_in"] - frames_in[p["pid"]]) / elapsed for p in state["participants"]
                   if p["pid"] in frames_in]  # frames the server decoded from each participant
    audio_rates = sorted((a - b) / elapsed for a, b in zip(audio_after, audio_before) if a > 0)
    latency = [v for p in people for v in p.latency_ms]
    rms = [v for p in people for v in p.audio_rms[-50:]]
    source.stop_event.set()
    await asyncio.gather(*(p.close() for p in people))
    return {"participants": n, "seconds": round(elapsed, 1), "server_fps": state["video"]["fps"],
            "compose_ms": state["video"]["compose_ms"], "encode_ms": state["video"]["encode_ms"],
            "received_fps_min": round(min(rates, default=0.0), 1),
            "received_fps_max": round(max(rates, default=0.0), 1),
            "video_streams_received": len(rates),
            "input_fps_min": round(min(input_rates, default=0.0), 1),
            "input_fps_max": round(max(input_rates, default=0.0), 1),
            "audio_fps_min": round(min(audio_rates, default=0.0), 1), "audio_streams_received": len(audio_rates),
            "latency_samples": len(latency), "sender_overflows": sum(p.video.overflows for p in people),
            "server_backlog": state["video"].get("max_backlog"),
            "input_backlog": [p.get("input_backlog") for p in state["participants"]],
            "server_overflows": state["video"]["overflows"], "latency_p50_ms": percentile(latency, 0.5),
            "latency_p90_ms": percentile(latency, 0.9), "audio_rms": round(float(np.mean(rms)), 1) if rms else 0.0,
            "sizes": sorted({s for p in people for s in p.sizes}), "layout": state["layout"],
            "tile": tile}


async def run_viewer(base: str, room: str, warmup: float, seconds: float) -> dict:
    """A view-only wall subscriber (open demo access) that decodes and measures latency."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    probe = Participant(base, room, "", SenderTrack(), ToneTrack(0))

    @pc.on("track")
    def on_track(track) -> None:
        probe.tasks.append(asyncio.ensure_future(probe._consume(track)))

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/streams/v1/conferences/{room}/view",
                                json={"sdp": pc.localDescription.sdp, "type": "offer"}) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"view refused: {resp.status} {body}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await asyncio.sleep(warmup)
        async with session.get(f"{base}/streams/v1/conferences/{room}") as resp:
            probe.tile = (await resp.json())["tiles"][0]
        probe.latency_ms.clear()
        before, start = probe.frames, time.monotonic()
        await asyncio.sleep(seconds)
        fps = (probe.frames - before) / (time.monotonic() - start)
    for task in probe.tasks:
        task.cancel()
    await pc.close()
    lat = probe.latency_ms
    return {"viewer_fps": round(fps, 1), "latency_samples": len(lat), "latency_p50_ms": percentile(lat, 0.5),
            "latency_p90_ms": percentile(lat, 0.9), "sizes": sorted(probe.sizes)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--room", default="bench")
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--decode", type=int, default=1, help="how many received video streams to decode")
    parser.add_argument("--viewer", action="store_true", help="be one decoding wall viewer instead")
    parser.add_argument("--offset", type=int, default=0, help="number of the first participant")
    parser.add_argument("--no-audio", action="store_true", help="video only (to see what audio costs)")
    args = parser.parse_args()
    if args.viewer:
        result = asyncio.run(run_viewer(args.base, args.room, args.warmup, args.seconds))
    else:
        result = asyncio.run(run(args.base, args.secret, args.room, args.participants, args.warmup, args.seconds,
                                 args.decode, args.offset, not args.no_audio))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
