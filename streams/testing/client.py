"""An aiortc viewer of the streams service, for tests and benchmarks.

    python -m streams.testing.client --base http://127.0.0.1:8060 --camera 1 --viewers 4 --seconds 10 [--decode]

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




def count_without_decoding() -> dict:
    """Patch aiortc's receiver to skip decoding; returns a dict frame-count keyed by id(None)."""
    counter = {"frames": 0}

    class _Decoder:
        def decode(self, encoded_frame) -> list:
            counter["frames"] += 1
            return []

    rtcrtpreceiver.get_decoder = lambda codec: _Decoder()  # type: ignore[assignment]
    return counter


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


async def run(base: str, camera: int, viewers: int, seconds: float, decode: bool, token: str | None) -> dict:
    counter = None if decode else count_without_decoding()
    async with aiohttp.ClientSession() as session:
        group = [Viewer(base, camera, token) for _ in range(viewers)]
        await asyncio.gather(*(v.connect(session) for v in group))
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        result = {"viewers": viewers, "seconds": round(elapsed, 2)}
        if decode:
            result["frames"] = [v.frames for v in group]
            result["fps_per_viewer"] = round(sum(v.frames for v in group) / viewers / elapsed, 1)
            result["first_frame_s"] = [round(v.first_frame_s, 3) if v.first_frame_s else None for v in group]
            result["sizes"] = sorted({s for v in group for s in v.sizes})
        else:
            result["frames_total"] = counter["frames"]
            result["fps_per_viewer"] = round(counter["frames"] / viewers / elapsed, 1)
        await asyncio.gather(*(v.close() for v in group))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--camera", type=int, default=1)
    parser.add_argument("--viewers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--decode", action="store_true")
    parser.add_argument("--token")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.base, args.camera, args.viewers, args.seconds, args.decode,
                                     args.token))), flush=True)


if __name__ == "__main__":
    main()
