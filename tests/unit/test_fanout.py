"""Direct writes to the screens: frames a WebSocket client decodes, order kept, a slow screen never blocks."""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

from backend import fanout as fo


def _client_after_handshake() -> WSConnection:
    """A wsproto client that has completed its opening handshake with a wsproto server."""
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="wall", target="/socket.io/")))
    assert isinstance(next(server.events()), Request)
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client


@pytest.mark.parametrize("payload", ["42[\"events\",{}]", "大屏" * 70, "x" * 70_000, b"\x00\x01" * 40_000])
def test_a_client_decodes_our_frames(payload):
    client = _client_after_handshake()
    client.receive_data(fo.frame(payload))
    events = list(client.events())
    assert len(events) == 1
    ev = events[0]
    assert isinstance(ev, TextMessage if isinstance(payload, str) else BytesMessage)
    assert ev.data == payload and ev.message_finished


def _link(fan: fo.Fanout, sock: socket.socket, sid: str = "s1") -> fo.Link:
    eio = SimpleNamespace(sid=sid, upgraded=True, upgrading=False, closed=False, queue=SimpleNamespace(empty=lambda: True))
    ws = SimpleNamespace(sock=sock)
    link = fan.attach(eio, ws)
    assert isinstance(ws.sock, fo.SocketProxy) and fan.links[sid] is link
    return link


def _read_all(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_a_screen_that_does_not_read_never_blocks_the_writer_and_gets_everything_in_order():
    a, b = socket.socketpair()
    try:
        fan = fo.Fanout()
        link = _link(fan, a)
        blob = [bytes([i % 251]) * 50_000 for i in range(40)]     # 2 MB: far more than a socket buffer
        t0 = time.monotonic()
        for part in blob:
            link.write(part)
        assert time.monotonic() - t0 < 5, "a write waited for the slow screen"
        assert link.pending, "the socket took 2 MB at once: the test proves nothing"
        got = _read_all(b, sum(map(len, blob)))
        assert got == b"".join(blob)
        deadline = time.monotonic() + 5
        while fan._lagging and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not fan._lagging and not link.pending
    finally:
        a.close()
        b.close()


def test_the_librarys_own_writes_queue_behind_a_backlog():
    a, b = socket.socketpair()
    try:
        fan = fo.Fanout()
        link = _link(fan, a)
        proxy = fo.SocketProxy(link)
        link.write(b"A" * 3_000_000)
        proxy.send(b"PING")                 # what simple-websocket writes goes through the same link
        got = _read_all(b, 3_000_004)
        assert got.endswith(b"A" * 10 + b"PING") and got.count(b"A") == 3_000_000
    finally:
        a.close()
        b.close()


def test_a_screen_too_far_behind_is_cut_off(monkeypatch):
    monkeypatch.setattr(fo, "MAX_PENDING", 200_000)
    a, b = socket.socketpair()
    try:
        fan = fo.Fanout()
        link = _link(fan, a)
        for _ in range(100):
            try:
                link.write(b"B" * 100_000)
            except BrokenPipeError:
                break
        assert link.closed and "s1" not in fan.links and fan.stats["cut_off"] == 1
        b.settimeout(5)
        while b.recv(1 << 20):   # the screen sees its connection end (and reconnects, resyncing)
            pass
    finally:
        a.close()
        b.close()


def test_packets_for_a_screen_not_on_websocket_take_the_librarys_path():
    sent = []
    eio = SimpleNamespace(_async={"websocket": object}, send_packet=lambda sid, pkt: sent.append((sid, pkt)))
    fan = fo.Fanout()
    fan.install(eio)
    eio.send_packet("polling-sid", "pkt")
    assert sent == [("polling-sid", "pkt")] and fan.stats["queued"] == 1


def test_one_frame_is_built_per_packet_and_written_to_every_screen():
    from engineio import packet as eio_packet

    pairs = [socket.socketpair() for _ in range(3)]
    try:
        fan = fo.Fanout()
        fan.install(SimpleNamespace(_async={"websocket": object}, send_packet=lambda sid, pkt: None))
        for i, (a, _b) in enumerate(pairs):
            _link(fan, a, sid=f"s{i}")
        pkt = eio_packet.Packet(eio_packet.MESSAGE, '2["events",{"last":7}]')
        send = fan._sender(lambda sid, p: pytest.fail("took the slow path"))
        for i in range(3):
            send(f"s{i}", pkt)
        want = fo.frame('42["events",{"last":7}]')
        assert pkt._ws_frame == want and fan.stats["direct"] == 3
        for _a, b in pairs:
            assert _read_all(b, len(want)) == want
    finally:
        for a, b in pairs:
            a.close()
            b.close()
