"""JT/T 808 TCP gateway (部标 808 接入网关): one asyncio protocol object per terminal connection.

Each received chunk is split once on 0x7E; every complete frame is unescaped, checksum-checked
and handled. Replies other than location acknowledgements go out at once, in one write per chunk.
Acknowledgements of location messages (0x0200, 0x0704) wait until the pipeline has written the
positions to Redis, so an acknowledged position is stored; after each flush every connection gets
its acknowledgements in one write. Bad frames are dropped and counted, the connection stays up;
a partial frame longer than any legal frame closes the connection (memory stays bounded), and so
do silence longer than ``idle_timeout`` and a megabyte of replies left unread.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

from backend.gps import jt808
from backend.gps.jt808 import FrameError
from backend.gps.pipeline import PositionPipeline
from backend.gps.registry import DeviceInfo, Registry
from backend.gps.stats import Stats

log = logging.getLogger("citywall.gps.jt808")

_ID_ATTR = struct.Struct(">HH")
_REPLY_TAIL = struct.Struct(">HHHB")  # own serial, reply serial, reply id, result
_unescape = jt808.unescape
_checksum = jt808.checksum
_location = jt808.location_position
_decode_batch = jt808.decode_batch

LOCATION = jt808.LOCATION
BATCH = jt808.BATCH_LOCATION
HEARTBEAT = jt808.HEARTBEAT
QUERY_REPLY = jt808.LOCATION_QUERY_REPLY
MAX_PENDING = jt808.MAX_ESCAPED_FRAME
MAX_UNREAD = 1 << 20  # bytes of replies a terminal may leave unread before it is cut off


class Jt808Server:
    """Holds what the connections share: registry, pipeline, counters, limits."""

    def __init__(self, registry: Registry, pipeline: PositionPipeline, stats: Stats | None = None,
                 *, idle_timeout: float = 300.0, max_connections: int = 50_000) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self.stats = stats or pipeline.stats
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[Jt808Connection] = set()
        self.pending: set[Jt808Connection] = set()  # connections with acks to send
        pipeline.flush_listeners.append(self.send_pending)
        self.server: asyncio.base_events.Server | None = None
        self._reaper: asyncio.Task | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 5015, reuse_port: bool = False) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Jt808Connection(self), host, port,
                                               reuse_port=reuse_port or None, backlog=4096)
        self._reaper = loop.create_task(self._reap_idle(), name="jt808-idle")
        return self.server.sockets[0].getsockname()[1]

    def send_pending(self) -> None:
        """After a flush: one write per connection for all of its acknowledgements."""
        pending, self.pending = self.pending, set()
        for conn in pending:
            conn.send_out()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def _reap_idle(self) -> None:
        """Close connections silent for longer than idle_timeout."""
        while True:
            await asyncio.sleep(min(5.0, max(0.2, self.idle_timeout / 4)))
            deadline = time.monotonic() - self.idle_timeout
            for conn in [c for c in self.connections if c.last_active < deadline and not c.closed]:
                self.stats.add("connections_idle_closed")
                conn.close()


class Jt808Connection(asyncio.Protocol):
    """One terminal's TCP connection (终端连接)."""

    def __init__(self, server: Jt808Server) -> None:
        self.server = server
        self.stats = server.stats
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.rest = b""
        self.last_active = time.monotonic()
        self.closed = False
        self.device: DeviceInfo | None = None
        self._phone_raw = b""
        self._prefix = b""  # reply header up to the phone, for the current terminal
        self._prefix_xor = 0
        self._reply_prefix = (b"", 0)
        self._key = ""
        self._out: list[bytes] = []  # replies waiting for the pipeline's flush
        self._serial = 0
        self.authenticated = False

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        self.stats.add("connections_total")
        if len(server.connections) >= server.max_connections:
            self.stats.add("connections_overflow_closed")
            self.closed = True
            transport.close()
            return
        server.connections.add(self)
        self.stats.add("connections_open")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.stats.add("connections_open", -1)

    def _overflow(self) -> None:
        self.stats.add("frames_oversize")
        self.stats.add("connections_overflow_closed")
        self.rest = b""
        self.close()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        buffer = self.rest + data if self.rest else data
        if b"\x7e" not in data:
            if len(buffer) > MAX_PENDING:
                self._overflow()
            else:
                self.rest = buffer
            return
        parts = buffer.split(b"\x7e")
        rest = parts.pop()
        if len(rest) > MAX_PENDING:
            self._overflow()
            return
        self.rest = rest
        self._handle(parts)

    # ------------------------------------------------------------------ frames
    def _identify(self, phone_raw: bytes, is_2019: bool) -> None:
        """A new phone on this connection: look the device up, build the reply prefix."""
        phone = phone_raw[1:].hex() if is_2019 else phone_raw.hex()
        self._phone_raw = phone_raw
        self.device = self.server.registry.resolve("jt808", phone)
        self._key = self.device.key if self.device is not None else ""
        if is_2019:  # 0x8001, attributes: 2019 flag + body length 5, version byte, phone
            self._prefix = b"\x80\x01\x40\x05" + phone_raw
        else:
            self._prefix = b"\x80\x01\x00\x05" + phone_raw
        self._prefix_xor = _checksum(self._prefix)
        self._reply_prefix = (self._prefix, self._prefix_xor)
        self.authenticated = False

    def _ack(self, serial: int, msg_id: int, result: int,
             prefix: tuple[bytes, int] | None = None) -> bytes:
        """0x8001 to the current terminal (or the one whose reply prefix is given)."""
        head, head_xor = prefix or (self._prefix, self._prefix_xor)
        own = self._serial = (self._serial + 1) & 0xFFFF
        words = own ^ serial ^ msg_id
        check = head_xor ^ (words >> 8) ^ (words & 0xFF) ^ result
        out = head + _REPLY_TAIL.pack(own, serial, msg_id, result) + bytes((check,))
        if b"\x7d" in out or b"\x7e" in out:
            out = out.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")
        return b"\x7e" + out + b"\x7e"

    def _handle(self, parts: list[bytes]) -> None:
        """Decode and answer every frame of one received chunk; one write for all replies."""
        stats = self.stats
        replies: list[bytes] = []
        positions: list = []
        # location acks wait for the write: (serial, msg id, reply prefix); a negative msg id
        # marks a batch with faulty items (answered "message error"). Other replies go at once.
        held: list[tuple[int, int, tuple[bytes, int]]] = []
        received = time.time()
        frames = 0
        for raw in parts:
            if not raw:
                continue
            frames += 1
            if b"\x7d" in raw:
                try:
                    raw = _unescape(raw)
                except FrameError:
                    stats.add("frames_bad_escape")
                    continue
            size = len(raw)
            if size < 13:
                stats.add("frames_malformed")
                continue
            if _checksum(raw):
                stats.add("frames_bad_checksum")
                continue
            msg_id, attr = _ID_ATTR.unpack_from(raw)
            if attr & 0x4000:
                header_end = 17
                phone_raw = raw[4:15]
            else:
                header_end = 12
                phone_raw = raw[4:10]
            if attr & 0x2000:
                header_end += 4
            if size - 1 - header_end != attr & 0x3FF:  # also guarantees the header is there
                stats.add("frames_malformed")
                continue
            at = header_end - 6 if attr & 0x2000 else header_end - 2
            serial = (raw[at] << 8) | raw[at + 1]
            if phone_raw != self._phone_raw:
                self._identify(phone_raw, bool(attr & 0x4000))
            if attr & 0x3C00:  # encrypted or split into packages: not supported here
                stats.add("frames_unsupported")
                replies.append(self._ack(serial, msg_id, jt808.RESULT_UNSUPPORTED))
                continue
            if msg_id == LOCATION:
                key = self._key
                if not key:
                    replies.append(self._ack(serial, msg_id, jt808.RESULT_FAILURE))
                    continue
                try:
                    positions.append(_location(raw[header_end:size - 1], key, received))
                except FrameError:
                    stats.add("positions_invalid")
                    replies.append(self._ack(serial, msg_id, jt808.RESULT_MESSAGE_ERROR))
                    continue
                held.append((serial, msg_id, self._reply_prefix))
            elif msg_id == BATCH:
                replies.append(self._batch(raw[header_end:size - 1], serial, positions, held,
                                           received))
            elif msg_id == QUERY_REPLY and self._key and size - 1 - header_end >= 30:
                # 位置信息查询应答: reply serial + a location body; a reply, so not answered
                try:
                    positions.append(_location(raw[header_end + 2:size - 1], self._key, received))
                except FrameError:
                    stats.add("positions_invalid")
            elif msg_id == HEARTBEAT:
                stats.add("heartbeats")
                replies.append(self._ack(serial, msg_id, jt808.RESULT_OK if self._key
                                         else jt808.RESULT_FAILURE))
            else:
                try:
                    replies.append(self._control(msg_id, serial, attr, raw[header_end:size - 1], raw))
                except (FrameError, ValueError) as exc:  # never let one frame end the connection
                    stats.add("frames_malformed")
                    log.info("jt808 0x%04x from %s dropped: %s", msg_id, self._key or "?", exc)
        stats.add("frames", frames)
        if self.device is not None:
            self.server.registry.touch(self.device, received)
        if positions:
            stats.add("positions", len(positions))
        immediate = b"".join(replies)
        if immediate:
            self._write(immediate)
        if held or positions:
            self._submit(positions, held)

    def _batch(self, body: bytes, serial: int, positions: list, held: list,
               received: float) -> bytes:
        """0x0704 批量上传: every good item is stored; faulty items make the answer result 2."""
        if not self._key:
            return self._ack(serial, BATCH, jt808.RESULT_FAILURE)
        try:
            items = _decode_batch(body)[1]
        except FrameError:
            self.stats.add("frames_malformed")
            return self._ack(serial, BATCH, jt808.RESULT_MESSAGE_ERROR)
        bad = 0
        for item in items:
            try:
                positions.append(_location(item, self._key, received))
            except FrameError:
                bad += 1
        if bad:
            self.stats.add("positions_invalid", bad)
        held.append((serial, -BATCH if bad else BATCH, self._reply_prefix))
        return b""

    def _submit(self, positions: list, held: list) -> None:
        """Hand positions to the pipeline; their acknowledgements go out once written."""
        def done(ok: bool) -> None:
            out = self._out
            for serial, msg_id, prefix in held:
                if msg_id < 0:
                    out.append(self._ack(serial, -msg_id, jt808.RESULT_MESSAGE_ERROR, prefix))
                else:
                    out.append(self._ack(serial, msg_id, jt808.RESULT_OK if ok
                                         else jt808.RESULT_FAILURE, prefix))
            self.server.pending.add(self)

        if not positions:
            done(True)
            self.send_out()
        elif not self.server.pipeline.submit(positions, done):
            done(False)
            self.send_out()

    def send_out(self) -> None:
        """Write the gathered acknowledgements in one go."""
        out, self._out = self._out, []
        if out:
            self._write(b"".join(out))

    def _write(self, data: bytes) -> None:
        if data and not self.closed:
            self.transport.write(data)
            if self.transport.get_write_buffer_size() > MAX_UNREAD:  # a peer that never reads
                self.stats.add("connections_overflow_closed")
                self.transport.abort()
                self.closed = True

    def _control(self, msg_id: int, serial: int, attr: int, body: bytes, raw: bytes) -> bytes:
        """Register, auth, logout and everything else (answered as unsupported)."""
        stats = self.stats
        device = self.device
        header = jt808.Header(msg_id, attr & 0x3FF, self._phone_hex(attr), serial,
                              raw[4] if attr & 0x4000 else None)
        if msg_id == jt808.REGISTER:
            stats.add("registrations")
            try:
                registration = jt808.decode_register(body, header.is_2019)
            except FrameError:
                stats.add("frames_malformed")
                return self._ack(serial, msg_id, jt808.RESULT_MESSAGE_ERROR)
            if device is None:  # unknown (auto-registration off) or disabled
                return jt808.register_reply(header, jt808.REGISTER_TERMINAL_UNKNOWN,
                                            serial=self._next_serial())
            log.info("terminal %s registered (plate %r, model %r)", device.key,
                     registration.plate, registration.model)
            return jt808.register_reply(header, jt808.REGISTER_OK,
                                        self.server.registry.auth_code(device),
                                        serial=self._next_serial())
        if msg_id == jt808.AUTH:
            stats.add("auths")
            try:
                auth = jt808.decode_auth(body, header.is_2019)
            except FrameError:
                stats.add("frames_malformed")
                return self._ack(serial, msg_id, jt808.RESULT_MESSAGE_ERROR)
            if device is not None and self.server.registry.check_auth(device, auth.auth_code):
                self.authenticated = True
                return self._ack(serial, msg_id, jt808.RESULT_OK)
            stats.add("frames_auth_failed")
            return self._ack(serial, msg_id, jt808.RESULT_FAILURE)
        if msg_id == jt808.LOGOUT:
            stats.add("logouts")
            self.authenticated = False
            return self._ack(serial, msg_id, jt808.RESULT_OK)
        if msg_id == jt808.TERMINAL_REPLY:
            return b""  # the terminal acknowledging one of ours: nothing to answer
        stats.add("frames_unsupported")
        return self._ack(serial, msg_id, jt808.RESULT_UNSUPPORTED)

    def _phone_hex(self, attr: int) -> str:
        return self._phone_raw[1:].hex() if attr & 0x4000 else self._phone_raw.hex()

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial
