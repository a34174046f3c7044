"""The web worker in a real gunicorn: keep-alive requests close together and far apart are all answered."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from backend import webworker

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(sock: socket.socket) -> tuple[int, bytes]:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    head, body = buf.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split(b" ")[1]), body


def test_keep_alive_requests_are_answered_whether_they_follow_at_once_or_after_the_linger():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--worker-class", "backend.webworker.Worker",
                             "--threads", "4", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                             "tests.webworker_app:app"], cwd=str(ROOT))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        for _ in range(5):  # one after another: the answering thread keeps the connection
            status, body = _get(sock)
            assert status == 200 and body.isdigit()
        time.sleep(webworker.LINGER * 3)  # quiet: the connection went back to the poller, still kept alive
        status, _ = _get(sock)
        assert status == 200
        other = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert _get(other)[0] == 200 and _get(sock)[0] == 200  # two clients in turn
        other.close()
        sock.close()
    finally:
        proc.terminate()
        proc.wait(10)
