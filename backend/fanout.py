"""Direct writes to the screens (直推): a message framed once, one non-blocking write per screen.

Socket.IO's threading mode hands every packet for every screen to that screen's writer thread: a queue
put, a thread wake-up, a WebSocket frame built (and, for a browser, deflated) per screen. With fifty
wall screens and a few pushes a second that per-screen work is most of what the web worker spends.

Here Socket.IO still encodes a broadcast once (python-socketio does) and hands the same Engine.IO packet
to `send_packet` for every recipient; for a screen on the WebSocket transport we frame that packet once
(an unmasked RFC 6455 frame, the same bytes for every screen, sent uncompressed: RSV1 clear, which
permessage-deflate allows) and write it with one non-blocking send. A screen whose socket cannot take a
frame at once keeps the rest in its own buffer, written out in order by one flusher thread; a screen that
falls `MAX_PENDING` bytes behind is cut off (it reconnects and resynchronises, as after any network cut).
Everything else written to that WebSocket (pings, the library's own frames) goes through the same
per-screen lock and buffer, so nothing overtakes anything.

Screens on long polling, or in the middle of a transport upgrade, take the library's usual path.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_PENDING = 8 * 1024 * 1024   # bytes a screen may fall behind before it is cut off
FLUSH_POLL_MS = 50


def frame(payload: str | bytes) -> bytes:
    """One unmasked, unfragmented WebSocket frame (server to client): text for str, binary for bytes."""
    if isinstance(payload, str):
        data, opcode = payload.encode("utf-8"), 0x1
    else:
        data, opcode = bytes(payload), 0x2
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + data


class Link:
    """One screen's WebSocket: its socket, a lock and the bytes it could not take yet (in order)."""

    __slots__ = ("sock", "fd", "eio_socket", "lock", "pending", "closed", "fanout")

    def __init__(self, sock: socket.socket, eio_socket: Any, fanout: "Fanout"):
        self.sock = sock
        self.fd = sock.fileno()
        self.eio_socket = eio_socket
        self.lock = threading.Lock()
        self.pending = bytearray()
        self.closed = False
        self.fanout = fanout

    def ready(self) -> bool:
        """On the WebSocket transport, no upgrade under way, nothing queued for the library's writer."""
        s = self.eio_socket
        return (not self.closed and s.upgraded and not s.upgrading and not s.closed
                and s.queue.empty())

    def _send_now(self, data) -> int:
        """Write what the socket takes without waiting; the count written."""
        try:
            if self.sock.gettimeout() is None:   # a blocking socket: ask for this one call not to block
                return self.sock.send(data, socket.MSG_DONTWAIT)
            return os.write(self.fd, data)       # a socket with a timeout is non-blocking underneath
        except (BlockingIOError, InterruptedError):
            return 0

    def write(self, data: bytes) -> None:
        """Send `data` after everything sent before it; never blocks on a slow screen."""
        lagging = False
        with self.lock:
            if self.closed:
                raise BrokenPipeError("screen gone")
            if self.pending:
                self.pending += data
            else:
                try:
                    n = self._send_now(data)
                except OSError:
                    self.closed = True
                    raise
                if n < len(data):
                    self.pending += data[n:]
                    lagging = True
            too_far = len(self.pending) > MAX_PENDING
        if too_far:
            self.fanout.cut_off(self)
        elif lagging:
            self.fanout.watch(self)

    def flush(self) -> None:
        """Write what the socket takes of the backlog; once it is empty the link is no longer watched."""
        with self.lock:
            if not self.closed and self.pending:
                try:
                    del self.pending[:self._send_now(self.pending)]
                except OSError:
                    self.closed = True
            if self.closed or not self.pending:
                self.pending.clear()
                self.fanout.unwatch(self)   # under the lock: a write cannot slip in between


class SocketProxy:
    """What simple-websocket holds as its socket: reads go to the socket, every write through the link."""

    def __init__(self, link: Link):
        self._link = link

    def send(self, data, flags: int = 0) -> int:
        self._link.write(bytes(data))
        return len(data)

    def sendall(self, data, flags: int = 0) -> None:
        self._link.write(bytes(data))

    def close(self) -> None:
        self._link.fanout.detach(self._link)
        self._link.sock.close()

    def __getattr__(self, name: str):
        return getattr(self._link.sock, name)


class Fanout:
    """The registry of screens on the WebSocket transport and the direct send path for their packets."""

    def __init__(self):
        self.links: dict[str, Link] = {}
        self._lock = threading.Lock()
        self._lagging: set[Link] = set()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self.stats = {"direct": 0, "queued": 0, "lagging": 0, "cut_off": 0}

    # --- hooking into python-engineio ----------------------------------------------------------
    def install(self, eio) -> None:
        """Track every WebSocket `eio` (an engineio.Server in threading mode) opens; send through `send_packet`."""
        base = eio._async["websocket"]
        eio._async = dict(eio._async, websocket=self._websocket_class(base))
        eio.send_packet = self._sender(eio.send_packet)

    def _websocket_class(self, base):
        fanout = self

        class TrackedWebSocket(base):
            def __init__(self, handler, server, **kwargs):
                eio_socket = getattr(handler, "__self__", None)

                def tracked(ws):
                    link = fanout.attach(eio_socket, ws.ws) if eio_socket is not None else None
                    try:
                        return handler(ws)
                    finally:
                        if link is not None:
                            fanout.detach(link)

                super().__init__(tracked, server, **kwargs)

        return TrackedWebSocket

    def _sender(self, original: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
        def send_packet(sid: str, pkt) -> None:
            link = self.links.get(sid)
            if link is None or not link.ready():
                self.stats["queued"] += 1
                return original(sid, pkt)
            data = getattr(pkt, "_ws_frame", None)
            if data is None:                      # the same packet object goes to every recipient
                data = frame(pkt.encode())
                pkt._ws_frame = data
            try:
                link.write(data)
                self.stats["direct"] += 1
            except OSError:
                pass  # the screen is gone; its reader notices and the library closes the session

        return send_packet

    def attach(self, eio_socket, ws) -> Link | None:
        """Route a new WebSocket's writes through a link (only a plain TCP socket: no TLS object)."""
        raw = getattr(ws, "sock", None)
        if type(raw) is not socket.socket:
            return None
        link = Link(raw, eio_socket, self)
        ws.sock = SocketProxy(link)
        with self._lock:
            self.links[eio_socket.sid] = link
        return link

    def detach(self, link: Link) -> None:
        with link.lock:
            link.closed = True
            link.pending.clear()
        with self._lock:
            if self.links.get(link.eio_socket.sid) is link:
                del self.links[link.eio_socket.sid]
            self._lagging.discard(link)

    def cut_off(self, link: Link) -> None:
        """A screen too far behind: close its socket (it reconnects and resynchronises)."""
        log.warning("screen %s fell %d bytes behind: disconnected", link.eio_socket.sid, len(link.pending))
        self.stats["cut_off"] += 1
        self.detach(link)
        try:
            link.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- the backlog of slow screens -----------------------------------------------------------
    def watch(self, link: Link) -> None:
        with self._lock:
            self._lagging.add(link)
            self.stats["lagging"] += 1
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="fanout-flusher", daemon=True)
                self._flusher.start()
        self._wake.set()

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                lagging = list(self._lagging)
                if not lagging:
                    self._wake.clear()
                    continue
            poller = select.poll()
            by_fd = {}
            for link in lagging:
                by_fd[link.fd] = link
                poller.register(link.fd, select.POLLOUT)
            try:
                ready = poller.poll(FLUSH_POLL_MS)
            except OSError:
                ready = [(fd, select.POLLOUT) for fd in by_fd]
            for fd, _ev in ready:
                link = by_fd.get(fd)
                if link is not None:
                    link.flush()

    def unwatch(self, link: Link) -> None:
        with self._lock:
            self._lagging.discard(link)
