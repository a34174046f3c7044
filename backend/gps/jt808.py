"""JT/T 808 codec (部标 808 道路运输车辆卫星定位系统终端通讯协议), 2013 and 2019 headers.

Pure functions and small value types, no I/O. A frame on the wire is
``0x7E | header | body | checksum | 0x7E``; inside the flags ``0x7E`` is sent as
``0x7D 0x02`` and ``0x7D`` as ``0x7D 0x01`` (the escaping covers the checksum too).
The checksum is the XOR of every header and body byte.

A terminal (终端) is known by its BCD phone number (终端手机号) kept as a digit string with
its leading zeros: 12 digits with the 2013 header, 20 digits with the 2019 header.
Positions are in 1e-6 degrees (WGS-84) and the BCD time is GMT+8; decoded times are UTC
epoch seconds.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from backend.gps.position import Position

FLAG = 0x7E
ESCAPE = 0x7D

# Message ids (消息 ID)
TERMINAL_REPLY = 0x0001  # 终端通用应答
HEARTBEAT = 0x0002  # 终端心跳
LOGOUT = 0x0003  # 终端注销
REGISTER = 0x0100  # 终端注册
AUTH = 0x0102  # 终端鉴权
LOCATION = 0x0200  # 位置信息汇报
LOCATION_QUERY_REPLY = 0x0201  # 位置信息查询应答
BATCH_LOCATION = 0x0704  # 定位数据批量上传 / 盲区补报
PLATFORM_REPLY = 0x8001  # 平台通用应答
REGISTER_REPLY = 0x8100  # 终端注册应答

# Results of the platform general reply (0x8001)
RESULT_OK = 0
RESULT_FAILURE = 1
RESULT_MESSAGE_ERROR = 2
RESULT_UNSUPPORTED = 3
RESULT_ALARM_CONFIRMED = 4

# Results of the register reply (0x8100)
REGISTER_OK = 0
REGISTER_VEHICLE_TAKEN = 1
REGISTER_VEHICLE_UNKNOWN = 2
REGISTER_TERMINAL_TAKEN = 3
REGISTER_TERMINAL_UNKNOWN = 4

MAX_BODY = 0x3FF  # 10 bits of body length
HEADER_2013 = 12
HEADER_2019 = 17
LOCATION_FIXED = 28  # fixed part of a 0x0200 body
# Largest escaped frame between the flags: every byte of the longest header, body and
# checksum escaped to two bytes.
MAX_ESCAPED_FRAME = 2 * (HEADER_2019 + 4 + MAX_BODY + 1)

_WORD = struct.Struct(">H")
_ID_ATTR = struct.Struct(">HH")
_LOCATION = struct.Struct(">IIIIhHH6s")
_REPLY_BODY = struct.Struct(">HHB")
_REGISTER_REPLY_HEAD = struct.Struct(">HB")
_BATCH_HEAD = struct.Struct(">HB")
_GMT8 = timezone(timedelta(hours=8))


class FrameError(ValueError):
    """A frame that cannot be decoded (bad escape, checksum, length, header or body)."""


# --------------------------------------------------------------------------- framing


def escape(data: bytes) -> bytes:
    """转义: 0x7D -> 0x7D 0x01, then 0x7E -> 0x7D 0x02."""
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """还原转义. Raises FrameError on a 0x7D followed by anything but 0x01 or 0x02."""
    if b"\x7d" not in data:
        return data
    escapes = data.count(b"\x7d")
    if escapes != data.count(b"\x7d\x01") + data.count(b"\x7d\x02") or data[-1] == ESCAPE:
        raise FrameError("bad escape sequence (0x7D not followed by 0x01 or 0x02)")
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


_FOLDS = [tuple(8 << i for i in range(k - 1, -1, -1)) for k in range(16)]


def checksum(data: bytes) -> int:
    """校验码: XOR of every byte (folded as one big integer, which is quicker in Python)."""
    if not data:
        return 0
    value = int.from_bytes(data, "little")
    for shift in _FOLDS[(len(data) - 1).bit_length()]:
        value ^= value >> shift
    return value & 0xFF


def frame(payload: bytes) -> bytes:
    """Header + body -> wire frame: add the checksum, escape, add both flags."""
    return b"\x7e" + escape(payload + bytes((checksum(payload),))) + b"\x7e"


def unframe(raw: bytes) -> bytes:
    """The bytes between two flags -> header + body with the checksum verified and removed."""
    if raw[:1] == b"\x7e" and raw[-1:] == b"\x7e":
        raw = raw[1:-1]
    data = unescape(raw)
    if len(data) < HEADER_2013 + 1:
        raise FrameError(f"frame too short ({len(data)} bytes)")
    if checksum(data) != 0:  # the XOR of payload and its checksum is zero
        raise FrameError("checksum mismatch")
    return data[:-1]


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Cut a received byte stream into candidate frames (still escaped, without flags).

    Returns (frames, rest) where rest is the incomplete tail after the last flag. Empty
    pieces between adjacent flags are skipped; bytes before the first flag of a stream come
    back as a candidate and fail to decode like any other garbage.
    """
    parts = buffer.split(b"\x7e")
    rest = parts.pop()
    return [p for p in parts if p], rest


# --------------------------------------------------------------------------- header


@dataclass(frozen=True, slots=True)
class Header:
    """消息头. version is None for the 2011/2013 header, the protocol version byte for 2019."""

    msg_id: int
    body_length: int
    phone: str
    serial: int
    version: int | None = None
    encryption: int = 0
    package_total: int = 0
    package_seq: int = 0

    @property
    def is_2019(self) -> bool:
        return self.version is not None

    @property
    def split(self) -> bool:
        return self.package_total > 0


@dataclass(frozen=True, slots=True)
class Message:
    header: Header
    body: bytes


def bcd_digits(raw: bytes) -> str:
    """BCD -> digit string, leading zeros kept. Non-BCD bytes keep their hex spelling."""
    return raw.hex()


def bcd_encode(digits: str, size: int) -> bytes:
    """Digit string -> BCD[size], left-padded with zeros (a shorter number is padded with 0).

    A full-length hex spelling (a terminal whose id bytes are not BCD) goes back unchanged."""
    if len(digits) == size * 2 and all(c in "0123456789abcdef" for c in digits):
        return bytes.fromhex(digits)
    if not digits.isdigit() or len(digits) > size * 2:
        raise ValueError(f"terminal phone must be at most {size * 2} digits, got {digits!r}")
    return bytes.fromhex(digits.rjust(size * 2, "0"))


def parse_message(payload: bytes) -> Message:
    """Header + body (unescaped, checksum removed) -> Message. Raises FrameError."""
    size = len(payload)
    if size < HEADER_2013:
        raise FrameError(f"message too short ({size} bytes)")
    msg_id, attr = _ID_ATTR.unpack_from(payload)
    body_length = attr & MAX_BODY
    version: int | None = None
    if attr & 0x4000:
        if size < HEADER_2019:
            raise FrameError(f"2019 message too short ({size} bytes)")
        version = payload[4]
        phone = payload[5:15].hex()
        serial = (payload[15] << 8) | payload[16]
        offset = HEADER_2019
    else:
        phone = payload[4:10].hex()
        serial = (payload[10] << 8) | payload[11]
        offset = HEADER_2013
    total = seq = 0
    if attr & 0x2000:
        if size < offset + 4:
            raise FrameError("split message too short for its package item")
        total, seq = _ID_ATTR.unpack_from(payload, offset)
        offset += 4
    if size - offset != body_length:
        raise FrameError(f"body length field says {body_length}, frame carries {size - offset}")
    header = Header(msg_id, body_length, phone, serial, version, (attr >> 10) & 7, total, seq)
    return Message(header, payload[offset:])


def decode_frame(raw: bytes) -> Message:
    """Bytes between the flags (escaped) -> Message. Raises FrameError."""
    return parse_message(unframe(raw))


def encode_header(msg_id: int, body_length: int, phone: str, serial: int,
                  version: int | None = None) -> bytes:
    """消息头 for an outgoing message; version None builds the 2013 header."""
    if body_length > MAX_BODY:
        raise ValueError(f"body of {body_length} bytes exceeds {MAX_BODY}; split it")
    if version is None:
        return _ID_ATTR.pack(msg_id, body_length) + bcd_encode(phone, 6) + _WORD.pack(serial & 0xFFFF)
    return (_ID_ATTR.pack(msg_id, body_length | 0x4000) + bytes((version & 0xFF,))
            + bcd_encode(phone, 10) + _WORD.pack(serial & 0xFFFF))


def encode_message(msg_id: int, phone: str, serial: int, body: bytes = b"",
                   version: int | None = None) -> bytes:
    """A complete wire frame (flags, escaping, checksum)."""
    return frame(encode_header(msg_id, len(body), phone, serial, version) + body)


# --------------------------------------------------------------------------- replies


def general_reply(header: Header, result: int = RESULT_OK, serial: int = 0) -> bytes:
    """平台通用应答 0x8001 to a terminal message, in the terminal's header version."""
    body = _REPLY_BODY.pack(header.serial, header.msg_id, result)
    return encode_message(PLATFORM_REPLY, header.phone, serial, body, header.version)


def register_reply(header: Header, result: int, auth_code: str = "", serial: int = 0) -> bytes:
    """终端注册应答 0x8100; the auth code (鉴权码) goes only with a successful result."""
    body = _REGISTER_REPLY_HEAD.pack(header.serial, result)
    if result == REGISTER_OK:
        body += auth_code.encode("gbk")
    return encode_message(REGISTER_REPLY, header.phone, serial, body, header.version)


@dataclass(frozen=True, slots=True)
class GeneralReply:
    """A decoded 0x8001 (or terminal 0x0001) reply body."""

    reply_serial: int
    reply_id: int
    result: int


def decode_general_reply(body: bytes) -> GeneralReply:
    if len(body) < 5:
        raise FrameError("general reply body must be 5 bytes")
    return GeneralReply(*_REPLY_BODY.unpack_from(body))


def decode_register_reply(body: bytes) -> tuple[int, int, str]:
    """0x8100 body -> (reply_serial, result, auth_code)."""
    if len(body) < 3:
        raise FrameError("register reply body must be at least 3 bytes")
    reply_serial, result = _REGISTER_REPLY_HEAD.unpack_from(body)
    return reply_serial, result, body[3:].decode("gbk", "replace")


# --------------------------------------------------------------------------- register / auth


@dataclass(frozen=True, slots=True)
class Registration:
    """终端注册 0x0100 body."""

    province: int
    city: int
    maker: str
    model: str
    terminal_id: str
    plate_color: int
    plate: str


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("gbk", "replace")


def decode_register(body: bytes, is_2019: bool) -> Registration:
    """0x0100 body; the 2011 layout (shorter than 37 bytes) is accepted too."""
    if is_2019:
        sizes = (11, 30, 30)
    elif len(body) < 37:
        sizes = (5, 8, 7)
    else:
        sizes = (5, 20, 7)
    fixed = 4 + sum(sizes) + 1
    if len(body) < fixed:
        raise FrameError(f"register body too short ({len(body)} < {fixed} bytes)")
    province, city = _ID_ATTR.unpack_from(body)
    pos = 4
    fields = []
    for size in sizes:
        fields.append(_text(body[pos:pos + size]))
        pos += size
    return Registration(province, city, fields[0], fields[1], fields[2], body[pos],
                        _text(body[pos + 1:]))


def encode_register(registration: Registration, is_2019: bool = False) -> bytes:
    """0x0100 body (for the terminal simulator and tests)."""
    sizes = (11, 30, 30) if is_2019 else (5, 20, 7)
    out = _ID_ATTR.pack(registration.province, registration.city)
    for text, size in zip((registration.maker, registration.model, registration.terminal_id), sizes):
        out += text.encode("gbk")[:size].ljust(size, b"\x00")
    return out + bytes((registration.plate_color,)) + registration.plate.encode("gbk")


@dataclass(frozen=True, slots=True)
class Authentication:
    """终端鉴权 0x0102 body; the 2019 body adds IMEI and software version."""

    auth_code: str
    imei: str = ""
    software_version: str = ""


def decode_auth(body: bytes, is_2019: bool) -> Authentication:
    if not is_2019:
        return Authentication(_text(body))
    if not body:
        raise FrameError("2019 auth body is empty")
    size = body[0]
    if len(body) < 1 + size:
        raise FrameError("2019 auth code longer than the body")
    rest = body[1 + size:]
    return Authentication(_text(body[1:1 + size]), _text(rest[:15]), _text(rest[15:35]))


def encode_auth(auth: Authentication, is_2019: bool = False) -> bytes:
    code = auth.auth_code.encode("gbk")
    if not is_2019:
        return code
    return (bytes((len(code),)) + code + auth.imei.encode()[:15].ljust(15, b"\x00")
            + auth.software_version.encode()[:20].ljust(20, b"\x00"))


# --------------------------------------------------------------------------- location


_BCD = [((b >> 4) * 10 + (b & 15)) if (b >> 4) < 10 and (b & 15) < 10 else -1 for b in range(256)]
_hour_cache: dict[bytes, int] = {}
_time_cache: dict[bytes, int] = {}


def _hour_epoch(prefix: bytes) -> int:
    year, month, day, hour = (_BCD[b] for b in prefix)
    try:
        moment = datetime(2000 + year, month, day, hour, tzinfo=_GMT8)
    except (ValueError, TypeError):
        raise FrameError(f"bad BCD time {prefix.hex()}") from None
    if min(year, month, day, hour) < 0:
        raise FrameError(f"bad BCD time {prefix.hex()}")
    return int(moment.timestamp())


def bcd_time(raw: bytes) -> int:
    """BCD[6] ``YYMMDDhhmmss`` in GMT+8 -> UTC epoch seconds (cached: at any moment most
    terminals report the same few seconds)."""
    epoch = _time_cache.get(raw)
    if epoch is not None:
        return epoch
    prefix = raw[:4]
    base = _hour_cache.get(prefix)
    if base is None:
        base = _hour_epoch(prefix)
        if len(_hour_cache) > 4096:
            _hour_cache.clear()
        _hour_cache[prefix] = base
    minute = _BCD[raw[4]]
    second = _BCD[raw[5]]
    if not (0 <= minute < 60 and 0 <= second < 60):
        raise FrameError(f"bad BCD time {raw.hex()}")
    epoch = base + minute * 60 + second
    if len(_time_cache) > 4096:
        _time_cache.clear()
    _time_cache[raw] = epoch
    return epoch


def encode_bcd_time(epoch: float) -> bytes:
    """UTC epoch seconds -> BCD[6] in GMT+8 (two-digit year: 2000..2099 only)."""
    moment = datetime.fromtimestamp(int(epoch), _GMT8)
    if not 2000 <= moment.year <= 2099:
        raise ValueError(f"time {moment.isoformat()} is outside the BCD years 2000..2099")
    return bytes.fromhex(moment.strftime("%y%m%d%H%M%S"))


# Status bits (状态位)
STATUS_ACC = 1 << 0
STATUS_POSITIONED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3
STATUS_OIL_CUT = 1 << 10
STATUS_POWER_CUT = 1 << 11
STATUS_DOOR_LOCKED = 1 << 12
STATUS_GPS = 1 << 18
STATUS_BEIDOU = 1 << 19
STATUS_GLONASS = 1 << 20
STATUS_GALILEO = 1 << 21

# Alarm bits (报警标志位), JT/T 808-2013 table 24
ALARM_BITS: dict[int, str] = {
    0: "sos",  # 紧急报警
    1: "overspeed",  # 超速报警
    2: "fatigue",  # 疲劳驾驶
    3: "danger",  # 危险预警
    4: "gnss_fault",  # GNSS 模块故障
    5: "gnss_antenna_cut",  # GNSS 天线未接或被剪断
    6: "gnss_antenna_short",  # GNSS 天线短路
    7: "power_low",  # 终端主电源欠压
    8: "power_off",  # 终端主电源掉电
    9: "lcd_fault",  # 终端 LCD 或显示器故障
    10: "tts_fault",  # TTS 模块故障
    11: "camera_fault",  # 摄像头故障
    12: "ic_card_fault",  # 道路运输证 IC 卡模块故障
    13: "overspeed_warning",  # 超速预警
    14: "fatigue_warning",  # 疲劳驾驶预警
    18: "driving_overtime",  # 当天累计驾驶超时
    19: "parking_overtime",  # 超时停车
    20: "area",  # 进出区域
    21: "route",  # 进出路线
    22: "route_time",  # 路段行驶时间不足/过长
    23: "route_deviation",  # 路线偏离报警
    24: "vss_fault",  # 车辆 VSS 故障
    25: "fuel_abnormal",  # 车辆油量异常
    26: "stolen",  # 车辆被盗
    27: "illegal_ignition",  # 车辆非法点火
    28: "illegal_displacement",  # 车辆非法位移
    29: "collision",  # 碰撞预警
    30: "rollover",  # 侧翻预警
    31: "illegal_door",  # 非法开门报警
}


def alarm_names(alarm: int) -> list[str]:
    """报警标志 -> names of the set standard bits (unnamed bits as ``bitN``)."""
    names = []
    bit = 0
    while alarm:
        if alarm & 1:
            names.append(ALARM_BITS.get(bit, f"bit{bit}"))
        alarm >>= 1
        bit += 1
    return names


def status_flags(status: int) -> dict[str, object]:
    """状态位 -> the flags a user reads."""
    gnss = [name for bit, name in ((STATUS_GPS, "gps"), (STATUS_BEIDOU, "beidou"),
                                   (STATUS_GLONASS, "glonass"), (STATUS_GALILEO, "galileo"))
            if status & bit]
    return {
        "acc": bool(status & STATUS_ACC),
        "positioned": bool(status & STATUS_POSITIONED),
        "oil_cut": bool(status & STATUS_OIL_CUT),
        "power_cut": bool(status & STATUS_POWER_CUT),
        "door_locked": bool(status & STATUS_DOOR_LOCKED),
        "gnss": gnss,
    }


# Additional items (附加信息): id -> (attribute name, scale). Unknown ids keep their hex.
ITEM_DECODERS: dict[int, tuple[str, float]] = {
    0x01: ("mileage", 0.1),  # 里程 1/10 km -> km
    0x02: ("fuel", 0.1),  # 油量 1/10 L -> L
    0x03: ("recorder_speed", 0.1),  # 行驶记录功能获取的速度 1/10 km/h
    0x04: ("alarm_event_id", 1),  # 需要人工确认报警事件的 ID
    0x25: ("ext_status", 1),  # 扩展车辆信号状态位
    0x2A: ("io_status", 1),  # IO 状态位
    0x2B: ("analog", 1),  # 模拟量
    0x30: ("signal", 1),  # 无线通信网络信号强度 (CSQ)
    0x31: ("satellites", 1),  # GNSS 定位卫星数
}


def decode_items(raw: bytes) -> dict[str, object]:
    """附加信息项 ``{id BYTE, len BYTE, value}``... -> attributes.

    Known numeric items get their name and unit; others are kept as ``x<id>`` hex strings.
    A truncated trailing item is ignored (real devices send them)."""
    attrs: dict[str, object] = {}
    pos = 0
    end = len(raw)
    while pos + 2 <= end:
        item_id = raw[pos]
        size = raw[pos + 1]
        start = pos + 2
        pos = start + size
        if pos > end:
            break
        known = ITEM_DECODERS.get(item_id)
        if known is not None and size:
            value = int.from_bytes(raw[start:pos], "big")
            attrs[known[0]] = value if known[1] == 1 else round(value * known[1], 1)
        else:
            attrs[f"x{item_id:02x}"] = raw[start:pos].hex()
    return attrs


@dataclass(frozen=True, slots=True)
class Location:
    """位置基本信息 + 附加信息 of a 0x0200 body. lat/lon signed degrees, time UTC epoch s."""

    alarm: int
    status: int
    lat: float
    lon: float
    altitude: int
    speed: float  # km/h
    heading: int
    time: int
    items: bytes = b""
    attrs: dict = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return bool(self.status & STATUS_POSITIONED)


def decode_location(body: bytes, with_items: bool = True) -> Location:
    """0x0200 body -> Location. Raises FrameError on a short body, bad time or coordinates."""
    if len(body) < LOCATION_FIXED:
        raise FrameError(f"location body too short ({len(body)} < 28 bytes)")
    alarm, status, lat_i, lon_i, altitude, speed, heading, when = _LOCATION.unpack_from(body)
    if lat_i > 90_000_000 or lon_i > 180_000_000:
        raise FrameError(f"coordinates out of range ({lat_i}, {lon_i})")
    lat = lat_i / 1e6
    lon = lon_i / 1e6
    if status & STATUS_SOUTH:
        lat = -lat
    if status & STATUS_WEST:
        lon = -lon
    items = body[LOCATION_FIXED:]
    return Location(alarm, status, lat, lon, altitude, speed / 10, heading, bcd_time(when),
                    items, decode_items(items) if with_items and items else {})


def location_position(body: bytes, device: str, received: float = 0.0) -> Position:
    """0x0200 body -> Position of the given device key (the gateway's fast path)."""
    if len(body) < LOCATION_FIXED:
        raise FrameError(f"location body too short ({len(body)} < 28 bytes)")
    alarm, status, lat_i, lon_i, altitude, speed, heading, when = _LOCATION.unpack_from(body)
    if lat_i > 90_000_000 or lon_i > 180_000_000:
        raise FrameError(f"coordinates out of range ({lat_i}, {lon_i})")
    lat = lat_i / 1e6
    lon = lon_i / 1e6
    if status & 12:
        if status & STATUS_SOUTH:
            lat = -lat
        if status & STATUS_WEST:
            lon = -lon
    return Position(device, bcd_time(when), lat, lon, speed / 10, heading, altitude,
                    (status & STATUS_POSITIONED) != 0, alarm, status, None, received,
                    body[LOCATION_FIXED:])


def encode_location(lat: float, lon: float, time: float, speed: float = 0.0, heading: int = 0,
                    altitude: int = 0, alarm: int = 0, status: int = STATUS_POSITIONED | STATUS_GPS,
                    items: bytes = b"") -> bytes:
    """0x0200 body (for the terminal simulator and tests). speed in km/h, time UTC epoch."""
    if lat < 0:
        status |= STATUS_SOUTH
    if lon < 0:
        status |= STATUS_WEST
    return _LOCATION.pack(alarm, status, round(abs(lat) * 1e6), round(abs(lon) * 1e6),
                          int(altitude), round(speed * 10), int(heading) % 360,
                          encode_bcd_time(time)) + items


def encode_item(item_id: int, value: bytes) -> bytes:
    return bytes((item_id, len(value))) + value


def decode_batch(body: bytes) -> tuple[int, list[bytes]]:
    """0x0704 body -> (type 0 normal / 1 blind-area back-fill, location bodies)."""
    if len(body) < 3:
        raise FrameError("batch body too short")
    count, kind = _BATCH_HEAD.unpack_from(body)
    pos = 3
    items = []
    end = len(body)
    for _ in range(count):
        if pos + 2 > end:
            raise FrameError(f"batch says {count} items, body holds {len(items)}")
        size = (body[pos] << 8) | body[pos + 1]
        pos += 2
        if pos + size > end:
            raise FrameError("batch item longer than the body")
        items.append(body[pos:pos + size])
        pos += size
    return kind, items


def encode_batch(locations: list[bytes], kind: int = 0) -> bytes:
    return _BATCH_HEAD.pack(len(locations), kind) + b"".join(
        _WORD.pack(len(item)) + item for item in locations)
