"""An aiortc viewer of the streams service, for tests and benchmarks.

    python -m streams.testing.client --base http://127.0.0.1:8060 --camera 1-16 --viewers 4 \\
        --warmup 3 --seconds 10 [--decode]

Without --decode the client only counts assembled frames (no H.264 decoding), so many viewers cost
the client process little. Prints one JSON line: frames per viewer, fps, time to first frame.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import rtcrtpreceiver




class CountingDecoder:
    """Stands in for aiortc's H.264 decoder: counts whole received frames, decodes nothing."""

    instances: list["CountingDecoder"] = []

    def __init__(self) -> None:
        self.frames = 0
        CountingDecoder.instances.append(self)

    def decode(self, encoded_frame) -> list:
        self.frames += 1
        return []


def count_without_decoding() -> list[CountingDecoder]:
    """Patch aiortc's receivers to skip decoding; returns the list of per-receiver counters."""
    rtcrtpreceiver.get_decoder = lambda codec: CountingDecoder()  # type: ignore[assignment]
    return CountingDecoder.instances


class Viewer:
    def __init__(self, base: str, camera: int, token: str | None = None) -> None:
        self.base, self.camera, self.token = base, camera, token
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self.first_frame_s: float | None = None
        self.sizes: set[tuple[int, int]] = set()
        self.started = time.monotonic()
        self._task: asyncio.Task | None = None

    async def connect(self, session: aiohttp.ClientSession) -> None:
        self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track) -> None:
            self._task = asyncio.ensure_future(self._consume(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with session.post(f"{self.base}/streams/v1/cameras/{self.camera}/offer", headers=headers,
                                json={"sdp": self.pc.localDescription.sdp, "type": "offer"}) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"offer refused: {resp.status} {body}")
        await self.pc.setRemoteDescription(RTCSessionDescription(**body))

    async def _consume(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                if self.first_frame_s is None:
                    self.first_frame_s = time.monotonic() - self.started
                self.frames += 1
                self.sizes.add((frame.width, frame.height))
        except Exception:
            return

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        await self.pc.close()


def parse_cameras(text: str) -> list[int]:
    """`3`, `1,2,5` or `1-16`."""
    ids: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        ids.extend(range(int(lo), int(hi or lo) + 1))
    return ids


async def run(base: str, cameras: list[int], viewers: int, seconds: float, decode: bool, token: str | None,
              warmup: float = 0.0) -> dict:
    """`viewers` viewers on each camera; frame rates are counted over `seconds` after `warmup`."""
    counters = None if decode else count_without_decoding()
    async with aiohttp.ClientSession() as session:
        group = [Viewer(base, cam, token) for cam in cameras for _ in range(viewers)]
        await asyncio.gather(*(v.connect(session) for v in group))
        await asyncio.sleep(warmup)
        before = [v.frames for v in group] if decode else [c.frames for c in counters]
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        after = [v.frames for v in group] if decode else [c.frames for c in counters]
        fps = sorted((a - b) / elapsed for a, b in zip(after, before))
        result = {"cameras": len(cameras), "viewers": len(group), "seconds": round(elapsed, 2),
                  "fps_per_viewer": round(sum(fps) / len(group), 1), "fps_min": round(fps[0], 1)}
        if decode:
            result["first_frame_s"] = [round(v.first_frame_s, 3) if v.first_frame_s else None for v in group]
            result["sizes"] = sorted({s for v in group for s in v.sizes})
        await asyncio.gather(*(v.close() for v in group))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--camera", default="1", help="an id, a list 1,2 or a range 1-16")
    parser.add_argument("--viewers", type=int, default=1, help="viewers per camera")
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--decode", action="store_true")
    parser.add_argument("--token")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.base, parse_cameras(args.camera), args.viewers, args.seconds,
                                     args.decode, args.token, args.warmup))), flush=True)


if __name__ == "__main__":
    main()
