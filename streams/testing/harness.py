"""Start and stop the processes tests and benchmarks need; every start has a matching stop."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DEBIAN_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).resolve().parent / "rtsp_camera.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@dataclass
class RtspCamera:
    """A GStreamer RTSP test camera in its own process (restartable on the same port)."""

    port: int = field(default_factory=free_port)
    path: str = "/cam"
    size: str = "640x360"
    fps: int = 25
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self) -> "RtspCamera":
        self.proc = subprocess.Popen(
            [DEBIAN_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--path", self.path,
             "--size", self.size, "--fps", str(self.fps)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("rtsp://"):
            self.stop()
            raise RuntimeError("the RTSP test camera did not start")
        return self

    def kill(self) -> None:
        """Kill the camera abruptly (a power cut)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()


@dataclass
class StreamsProcess:
    """`python -m streams` with its own camera file, port and data dir."""

    cameras: list[dict]
    port: int = field(default_factory=free_port)
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    _tmp: tempfile.TemporaryDirectory | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "StreamsProcess":
        self._tmp = tempfile.TemporaryDirectory(prefix="citywall-streams-")
        tmp = Path(self._tmp.name)
        cam_file = tmp / "cameras.json"
        cam_file.write_text(json.dumps(self.cameras), encoding="utf-8")
        env = {**os.environ, "CITYWALL_STREAMS_PORT": str(self.port), "CITYWALL_STREAMS_CAMERAS": str(cam_file),
               "CITYWALL_DATA_DIR": str(tmp), "CITYWALL_STREAMS_HOST": "127.0.0.1",
               "PYTHONPATH": str(ROOT), **self.env}
        self.log_path = tmp / "streams.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(VENV_PYTHON), "-m", "streams"], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streams exited: {self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/streams/v1/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("streams did not become healthy")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def get_json(self, path: str, token: str | None = None) -> dict:
        req = urllib.request.Request(self.base + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc, 10)
            self._log.close()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None


def chromium_args() -> list[str]:
    return ["--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required",
            "--no-sandbox", "--disable-gpu"]


CHROMIUM = "/usr/bin/chromium"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
