"""The web worker's keep-alive loop: the thread that answered serves the next request when it follows within
LINGER, and hands a quiet connection back to gthread's poller."""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest
from gunicorn.workers.gthread import ThreadWorker

from backend import webworker


class FakeConn:
    def __init__(self, sock):
        self.sock = sock
        self.data_ready = False
        self.parser = SimpleNamespace(unreader=SimpleNamespace(buf=SimpleNamespace(getvalue=lambda: self.buffered)))
        self.buffered = b""


@pytest.fixture
def served(monkeypatch):
    """gthread's own handle() replaced by one that answers a request: reads what the client sent."""
    calls: list[bytes] = []

    def handle(self, conn):
        data = conn.sock.recv(100)
        if not data:  # the client went: gthread closes the connection
            return False
        calls.append(data)
        return True

    monkeypatch.setattr(ThreadWorker, "handle", handle)
    return calls


def worker(alive: bool = True):
    w = webworker.Worker.__new__(webworker.Worker)
    w.alive = alive
    return w


def test_requests_that_follow_within_the_linger_are_served_by_the_same_call(served, monkeypatch):
    monkeypatch.setattr(webworker, "LINGER", 3.0)
    server, client = socket.socketpair()
    conn = FakeConn(server)
    client.sendall(b"one")

    def later():
        time.sleep(0.2)
        client.sendall(b"two")
        time.sleep(0.2)
        client.sendall(b"three")
        time.sleep(0.2)
        client.close()  # the client goes: readable, and gthread's handle finds it gone

    t = threading.Thread(target=later)
    t.start()
    assert worker().handle(conn) is False  # served until the client left, all in this one call
    t.join()
    assert served == [b"one", b"two", b"three"]
    server.close()


def test_a_quiet_connection_goes_back_to_the_poller_after_the_linger(served, monkeypatch):
    monkeypatch.setattr(webworker, "LINGER", 0.3)
    server, client = socket.socketpair()
    client.sendall(b"one")
    start = time.monotonic()
    assert worker().handle(FakeConn(server)) is True
    assert served == [b"one"]
    assert time.monotonic() - start >= 0.3  # it waited for a next request, then gave the connection back
    server.close()
    client.close()


def test_a_stopping_worker_or_read_ahead_bytes_hand_back_at_once(served, monkeypatch):
    monkeypatch.setattr(webworker, "LINGER", 30.0)  # waiting for it would show as a 30 s test
    server, client = socket.socketpair()
    client.sendall(b"one")
    start = time.monotonic()
    assert worker(alive=False).handle(FakeConn(server)) is True
    conn = FakeConn(server)
    conn.buffered = b"GET / HTTP/1.1"  # gthread requeues a request it already read
    client.sendall(b"two")
    assert worker().handle(conn) is True
    assert time.monotonic() - start < 15
    assert served == [b"one", b"two"]
    server.close()
    client.close()


def test_a_connection_gthread_closes_is_not_waited_on(monkeypatch):
    monkeypatch.setattr(webworker, "LINGER", 30.0)
    monkeypatch.setattr(ThreadWorker, "handle", lambda self, conn: False)
    server, client = socket.socketpair()
    start = time.monotonic()
    assert worker().handle(FakeConn(server)) is False
    assert time.monotonic() - start < 15
    server.close()
    client.close()
