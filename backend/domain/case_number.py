"""Case numbers (案卷号).

Practice format (reference §2.4): ``C|E`` + 大类 (2 digits) + 小类 (2 digits) +
``yyyyMMdd`` (the local date in Asia/Shanghai) + a sequence, e.g. ``C01012019041101``
where C = 部件 (component) and E = 事件 (event).

Choice: the sequence has **at least 4 digits** (``E0102202611260001``). The 2-digit
sequence of the practice example overflows at 100 cases of one class in one day,
which a busy class (暴露垃圾, 乱停放) reaches easily. Past 9999 the sequence simply
grows (``…10000``); the 13-character prefix has a fixed width, so parsing stays
unambiguous. A sequence is written without extra leading zeros, so each case has
exactly one spelling.

Uniqueness under concurrency is the store's job: it keeps an atomic counter per
:func:`prefix_for` key and formats the next value with :func:`format_case_number`.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

# China has kept UTC+8 without daylight saving since 1991; a fixed offset avoids
# reading the system time-zone database (the domain package does no I/O).
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")

KINDS: dict[str, str] = {"C": "部件", "E": "事件"}
SEQ_DIGITS = 4
PREFIX_LENGTH = 13  # kind (1) + class code (4) + yyyyMMdd (8)

_CLASS_KEY = re.compile(r"[CE][0-9]{4}")
_CASE_NUMBER = re.compile(r"([CE])([0-9]{2})([0-9]{2})([0-9]{8})([0-9]{4,})")


@dataclass(frozen=True)
class CaseNumber:
    """A parsed case number (案卷号)."""

    kind: str  # "C" 部件 or "E" 事件
    major: str  # 大类, 2 digits
    minor: str  # 小类, 2 digits
    local_date: datetime.date  # the report's date in Asia/Shanghai
    seq: int  # 1-based sequence within the prefix

    @property
    def class_key(self) -> str:
        """The catalog key of the class, e.g. ``E0102``."""
        return f"{self.kind}{self.major}{self.minor}"

    @property
    def prefix(self) -> str:
        """The counter key: class key + date."""
        return prefix_for(self.class_key, self.local_date)

    def __str__(self) -> str:
        return format_case_number(self.class_key, self.local_date, self.seq)


def local_date_of(moment: datetime.datetime) -> datetime.date:
    """The Asia/Shanghai calendar date of an aware moment (stored times are UTC)."""
    if not isinstance(moment, datetime.datetime):
        raise ValueError("moment must be a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware (e.g. UTC), got a naive datetime")
    return moment.astimezone(SHANGHAI).date()


def _check_class_key(class_key: object) -> str:
    if not isinstance(class_key, str) or not _CLASS_KEY.fullmatch(class_key):
        raise ValueError(
            f"class key must be C or E followed by 4 digits (e.g. C0101, E0102), "
            f"got {class_key!r}"
        )
    return class_key


def _check_date(local_date: object) -> datetime.date:
    if isinstance(local_date, datetime.datetime):
        return local_date_of(local_date)
    if not isinstance(local_date, datetime.date):
        raise ValueError(f"local_date must be a date, got {local_date!r}")
    return local_date


def prefix_for(class_key: str, local_date: datetime.date | datetime.datetime) -> str:
    """The 13-character counter key, e.g. ``E010220261126``.

    ``local_date`` is a date in Asia/Shanghai; an aware datetime is converted first.
    """
    key = _check_class_key(class_key)
    day = _check_date(local_date)
    return f"{key}{day.year:04d}{day.month:02d}{day.day:02d}"


def format_case_number(
    class_key: str, local_date: datetime.date | datetime.datetime, seq: int
) -> str:
    """Format a case number, e.g. ``format_case_number("E0102", date(2026,11,26), 1)``
    → ``E0102202611260001``."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError(f"sequence must be a positive integer, got {seq!r}")
    return f"{prefix_for(class_key, local_date)}{seq:0{SEQ_DIGITS}d}"


def parse_case_number(text: str) -> CaseNumber:
    """Parse and validate a case number; raise ValueError saying what is wrong.

    Surrounding spaces and a lower-case kind letter are accepted.
    """
    if not isinstance(text, str):
        raise ValueError(f"case number must be a string, got {text!r}")
    value = text.strip().upper()
    match = _CASE_NUMBER.fullmatch(value)
    if match is None:
        raise ValueError(
            f"malformed case number {text!r}: expected C|E + 4-digit class + yyyyMMdd + "
            f"a sequence of at least {SEQ_DIGITS} digits, e.g. E0102202611260001"
        )
    kind, major, minor, ymd, seq_text = match.groups()
    try:
        day = datetime.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    except ValueError:
        raise ValueError(f"case number {text!r} has an invalid date {ymd}") from None
    seq = int(seq_text)
    if seq < 1:
        raise ValueError(f"case number {text!r} has sequence 0; sequences start at 1")
    if len(seq_text) > SEQ_DIGITS and seq_text.startswith("0"):
        raise ValueError(
            f"case number {text!r} pads its sequence beyond {SEQ_DIGITS} digits; "
            f"expected {format_case_number(kind + major + minor, day, seq)}"
        )
    return CaseNumber(kind, major, minor, day, seq)
