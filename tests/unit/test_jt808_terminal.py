"""The terminal simulator's path walking and message building (no network)."""
from __future__ import annotations

import pytest

from backend.gps import jt808
from backend.gps.terminal import Terminal, bearing_deg, distance_m, osmand_query, walk


def test_distance_and_bearing():
    assert distance_m((22.5, 114.0), (22.5, 114.0)) == 0.0
    assert distance_m((0.0, 0.0), (1.0, 0.0)) == pytest.approx(111_195, rel=1e-3)
    assert bearing_deg((22.5, 114.0), (22.6, 114.0)) == pytest.approx(0.0, abs=1e-6)
    assert bearing_deg((22.5, 114.0), (22.5, 114.1)) == pytest.approx(90.0, abs=0.1)
    assert bearing_deg((22.5, 114.0), (22.4, 114.0)) == pytest.approx(180.0, abs=1e-6)


def test_walk_steps_along_the_path_and_ends_on_the_last_vertex():
    path = [(22.5, 114.0), (22.5009, 114.0), (22.5009, 114.001)]  # ~100 m north, ~103 m east
    points = list(walk(path, 25.0))
    assert points[0][:2] == path[0] and points[-1][:2] == path[-1]
    gaps = [distance_m(a[:2], b[:2]) for a, b in zip(points, points[1:])]
    assert all(g <= 25.5 for g in gaps)
    assert sum(gaps) == pytest.approx(distance_m(path[0], path[1]) + distance_m(path[1], path[2]), rel=0.02)
    assert points[1][2] == pytest.approx(0.0, abs=0.5)  # heading north first
    assert points[-1][2] == pytest.approx(90.0, abs=0.5)  # then east


@pytest.mark.parametrize("path, step", [([], 10.0), ([(1.0, 1.0)], 0.0)])
def test_walk_refuses_bad_input(path, step):
    with pytest.raises(ValueError):
        list(walk(path, step))


def test_terminal_frames_carry_its_phone_and_serials():
    terminal = Terminal("13912345678")
    first = jt808.decode_frame(terminal.encode(jt808.HEARTBEAT)[1:-1]).header
    second = jt808.decode_frame(terminal.encode(jt808.HEARTBEAT)[1:-1]).header
    assert first.phone == "013912345678" and (first.serial, second.serial) == (0, 1)
    header_2019 = jt808.decode_frame(Terminal("13912345678", version=1).encode(0x0002)[1:-1]).header
    assert header_2019.phone == "00000000013912345678" and header_2019.is_2019


def test_terminal_refuses_a_bad_phone():
    with pytest.raises(ValueError):
        Terminal("+86-139")
    with pytest.raises(ValueError):
        Terminal("1" * 13)


def test_osmand_query_is_what_traccar_client_sends():
    query = osmand_query("inspector01", 22.5, 114.0, timestamp=1377177267, speed_knots=3.0, batt=80)
    assert query == "id=inspector01&lat=22.5&lon=114.0&timestamp=1377177267&speed=3.0&batt=80"
