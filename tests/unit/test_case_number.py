"""Case numbers (案卷号): format, parse, counter prefix."""

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.case_number import (
    CaseNumber,
    format_case_number,
    local_date_of,
    parse_case_number,
    prefix_for,
)

DAY = datetime.date(2026, 11, 26)


def test_format_uses_class_key_local_date_and_four_digit_sequence():
    assert format_case_number("E0102", DAY, 1) == "E0102202611260001"
    assert format_case_number("C0101", datetime.date(2019, 4, 11), 1) == "C0101201904110001"


def test_sequence_beyond_9999_grows_and_still_parses():
    number = format_case_number("E0102", DAY, 12345)
    assert number == "E01022026112612345"
    assert parse_case_number(number).seq == 12345


def test_prefix_is_the_counter_key_shared_by_one_class_and_day():
    assert prefix_for("E0102", DAY) == "E010220261126"
    assert format_case_number("E0102", DAY, 7).startswith(prefix_for("E0102", DAY))
    assert prefix_for("E0102", DAY) != prefix_for("C0102", DAY)
    assert prefix_for("E0102", DAY) != prefix_for("E0102", DAY + datetime.timedelta(days=1))


def test_parse_returns_the_parts():
    parsed = parse_case_number("E0102202611260042")
    assert parsed == CaseNumber("E", "01", "02", DAY, 42)
    assert parsed.class_key == "E0102"
    assert parsed.prefix == "E010220261126"
    assert str(parsed) == "E0102202611260042"


def test_parse_accepts_spaces_and_lower_case_kind():
    assert parse_case_number(" e0102202611260042 ").class_key == "E0102"


def test_local_date_is_shanghai_date_of_a_utc_moment():
    late_utc = datetime.datetime(2026, 11, 25, 16, 30, tzinfo=datetime.timezone.utc)
    assert local_date_of(late_utc) == DAY  # 00:30 on the 26th in Shanghai
    early_utc = datetime.datetime(2026, 11, 25, 15, 59, tzinfo=datetime.timezone.utc)
    assert local_date_of(early_utc) == datetime.date(2026, 11, 25)
    assert prefix_for("E0102", late_utc) == "E010220261126"


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        local_date_of(datetime.datetime(2026, 11, 26, 9, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        format_case_number("E0102", datetime.datetime(2026, 11, 26, 9, 0), 1)


@pytest.mark.parametrize("key", ["X0102", "E012", "E01021", "e0102", "", None, 102])
def test_bad_class_key_is_refused(key):
    with pytest.raises(ValueError, match="class key"):
        format_case_number(key, DAY, 1)


@pytest.mark.parametrize("seq", [0, -1, True, 1.0, "1", None])
def test_bad_sequence_is_refused(seq):
    with pytest.raises(ValueError, match="sequence"):
        format_case_number("E0102", DAY, seq)


def test_bad_date_is_refused():
    with pytest.raises(ValueError, match="local_date"):
        format_case_number("E0102", "2026-11-26", 1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("E010220261126001", "malformed"),  # 3-digit sequence
        ("C01012019041101", "malformed"),  # the 2-digit practice example
        ("X0102202611260001", "malformed"),
        ("E0102202611260001X", "malformed"),
        ("E0102202602300001", "invalid date"),
        ("E0102202613010001", "invalid date"),
        ("E0102202611260000", "sequence 0"),
        ("E01022026112600001", "pads"),
        ("", "malformed"),
    ],
)
def test_parse_refuses_bad_numbers(text, message):
    with pytest.raises(ValueError, match=message):
        parse_case_number(text)


def test_parse_refuses_non_string():
    with pytest.raises(ValueError, match="string"):
        parse_case_number(17)


@given(
    kind=st.sampled_from("CE"),
    code=st.integers(0, 9999),
    day=st.dates(min_value=datetime.date(2000, 1, 1), max_value=datetime.date(2099, 12, 31)),
    seq=st.integers(1, 10**7),
)
def test_format_then_parse_round_trips(kind, code, day, seq):
    key = f"{kind}{code:04d}"
    number = format_case_number(key, day, seq)
    parsed = parse_case_number(number)
    assert (parsed.class_key, parsed.local_date, parsed.seq) == (key, day, seq)
    assert str(parsed) == number
