"""The streams process's side of the audio worker (音频进程监管): start, supervise, talk to it.

`AudioWorker` starts `python -m streams.conference.audio_worker` on a private Unix socket, restarts it
when it dies (each start is a new `generation`; the join page reconnects its audio when it sees the
generation change or its audio connection fail), forwards audio offers, sends mute / remove / close
commands in order, and polls the worker's state twice a second (levels for the voice-activated
speaker, mix statistics and each participant's audio connection for the room state).
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
POLL_EVERY = 0.5
START_TIMEOUT = 15.0


class AudioUnavailable(Exception):
    """The audio worker is not running (it is being (re)started)."""


class AudioRefused(Exception):
    """The audio worker refused an offer (bad SDP)."""


class AudioWorker:
    def __init__(self) -> None:
        self._dir = ""
        self.socket_path = ""
        self.proc: asyncio.subprocess.Process | None = None
        self.generation = 0  # number of the current worker start (0: never started)
        self.alive = False
        self.restarts = 0
        self.rooms: dict[str, dict] = {}  # room id -> the worker's last reported state
        self._session: aiohttp.ClientSession | None = None
        # requests to the worker, sent one at a time in order (a "remove" of a replaced connection
        # must not overtake the new connection's offer); offers carry a future for the answer
        self._commands: asyncio.Queue[tuple[str, dict, asyncio.Future | None]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._ready = asyncio.Event()  # set while the worker runs

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="citywall-audio-")  # private: only this user reaches the socket
        self.socket_path = os.path.join(self._dir, "audio.sock")
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.socket_path),
                                              timeout=aiohttp.ClientTimeout(total=10))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise()), loop.create_task(self._send_commands()),
                       loop.create_task(self._poll())]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._terminate()
        if self._session is not None:
            await self._session.close()
        for remove, path in ((os.unlink, self.socket_path), (os.rmdir, self._dir)):
            try:
                if path:
                    remove(path)
            except OSError:
                pass

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    async def _supervise(self) -> None:
        """Run the worker; when it exits, start it again (waiting longer after quick failures)."""
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._launch()
            except Exception:
                log.exception("the conference audio worker did not start")
            else:
                self.generation += 1
                self.alive = True
                self._ready.set()
                log.info("conference audio worker %d started (pid %s)", self.generation, self.proc.pid)
                code = await self.proc.wait()
                self.alive = False
                self._ready.clear()
                self.rooms = {}
                if self._stopping:
                    return
                log.warning("conference audio worker (pid %s) exited with %s; restarting", self.proc.pid, code)
            await self._terminate()
            self.restarts += 1
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 10.0)
            await asyncio.sleep(backoff)

    async def _launch(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams.conference.audio_worker", "--socket", self.socket_path,
            stdin=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}")
            try:
                async with self._session.get("http://worker/health") as resp:
                    if resp.status == 200 and (await resp.json()).get("pid") == self.proc.pid:
                        return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("no answer on its socket")

    # -- requests ------------------------------------------------------------------------------
    async def offer(self, room: str, pid: str, sdp: str, muted: bool, wait: float = 5.0) -> dict:
        """The worker's answer to a participant's audio offer (waits up to `wait` s for a (re)start)."""
        try:
            await asyncio.wait_for(self._ready.wait(), wait)
        except asyncio.TimeoutError:
            raise AudioUnavailable("the audio worker is (re)starting") from None
        answer: asyncio.Future = asyncio.get_running_loop().create_future()
        self._commands.put_nowait(("offer", {"room": room, "pid": pid, "sdp": sdp, "muted": muted}, answer))
        status, body = await answer
        if status == 400:
            raise AudioRefused(body.get("message", "bad offer"))
        if status != 200:
            raise AudioUnavailable(f"the audio worker answered {status}")
        return body

    def command(self, action: str, **body) -> None:
        """Queue mute / remove / close for the worker (sent in order; dropped while it is down)."""
        self._commands.put_nowait((action, body, None))

    async def _send_commands(self) -> None:
        while True:
            action, body, answer = await self._commands.get()
            try:
                if not self.alive or self._session is None:
                    # a restarted worker has no rooms; reconnecting clients bring their mute state
                    raise AudioUnavailable("the audio worker is restarting")
                async with self._session.post(f"http://worker/{action}", json=body) as resp:
                    result = (resp.status, await resp.json(content_type=None))
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, AudioUnavailable) as exc:
                log.info("audio worker request %s failed: %s", action, exc)
                if answer is not None and not answer.done():
                    answer.set_exception(AudioUnavailable(f"the audio worker is unreachable: {exc}"))
                continue
            if answer is not None and not answer.done():
                answer.set_result(result)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_EVERY)
            if not self.alive or self._session is None:
                continue
            try:
                async with self._session.get("http://worker/state") as resp:
                    self.rooms = (await resp.json())["rooms"]
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, KeyError, ValueError):
                self.rooms = {}

    # -- reading -------------------------------------------------------------------------------
    def room(self, room: str) -> dict:
        return self.rooms.get(room) or {"ticks": 0, "mix_ms": 0.0, "levels": {}, "participants": {}}

    def status(self) -> dict:
        return {"alive": self.alive, "generation": self.generation, "restarts": self.restarts, "pid": self.pid}
