"""The process's context (`use` / `current`): a thread finishing late never replaces the one installed."""
from __future__ import annotations

import threading
import time

import pytest

from backend.services import context
from backend.services.context import current, use


def test_a_released_context_is_not_rebuilt_by_a_late_thread(sqlite_store):
    use(None)  # a test's teardown, while a stopped wall bridge may still be computing its panels
    with pytest.raises(RuntimeError, match="released"):
        current()
    use(sqlite_store)
    assert current() is sqlite_store


def test_installing_a_context_wins_over_a_default_being_built(sqlite_store, monkeypatch):
    monkeypatch.setattr(context, "_current", None)
    monkeypatch.setattr(context, "_released", False)
    default = object()
    building = threading.Event()

    def slow_default(_cfg):
        building.set()
        time.sleep(0.3)
        return default

    monkeypatch.setattr(context.Context, "from_config", staticmethod(slow_default))
    seen: list = []
    late = threading.Thread(target=lambda: seen.append(current()))
    late.start()
    assert building.wait(10)  # the late thread is building the default now
    use(sqlite_store)
    late.join()
    assert seen == [default]
    assert current() is sqlite_store
