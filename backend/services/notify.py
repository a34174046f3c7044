"""The message gateway (业务短信网关): notifications of emergency command go out through it.

A driver is a class with ``send(recipient, text) -> Delivery`` and, optionally,
``status(provider_id) -> Delivery`` for providers that confirm delivery later. The default is the log
driver (``LogDriver``): it writes each message to the log and reports it delivered. A real provider is
plugged in by configuration: ``CITYWALL_SMS_DRIVER=package.module:Class`` (the class is built without
arguments and reads its own settings from the environment).

Delivery states: ``queued`` (recorded, not yet handed over), ``sent`` (the provider accepted it),
``delivered`` (the provider confirmed it), ``failed`` (refused or the driver raised; ``error`` says why).
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("citywall.sms")

STATES = ("queued", "sent", "delivered", "failed")
ENV_DRIVER = "CITYWALL_SMS_DRIVER"
MAX_TEXT = 500


@dataclass(frozen=True)
class Delivery:
    """What a driver says about one message."""

    state: str
    provider_id: str | None = None
    error: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown delivery state {self.state!r}; one of: {', '.join(STATES)}")


class Driver(Protocol):
    name: str

    def send(self, recipient: str, text: str) -> Delivery: ...


class LogDriver:
    """Writes every message to the log (logger ``citywall.sms``) and reports it delivered."""

    name = "log"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self.sent: list[tuple[str, str]] = []  # kept for inspection (tests, the demo); the last 1000

    def send(self, recipient: str, text: str) -> Delivery:
        with self._lock:
            self._seq += 1
            seq = self._seq
            self.sent.append((recipient, text))
            del self.sent[:-1000]
        log.info("SMS to %s: %s", recipient, text)
        return Delivery("delivered", provider_id=f"log-{os.getpid()}-{seq}")


class DriverError(RuntimeError):
    """The configured driver cannot be loaded."""


def load_driver(spec: str) -> Driver:
    """Build a driver from ``package.module:Class``; a clear DriverError when that is not possible."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise DriverError(f"{ENV_DRIVER} must look like 'package.module:Class', got {spec!r}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise DriverError(f"cannot load SMS driver {spec!r}: {exc}") from exc
    driver = cls()
    if not callable(getattr(driver, "send", None)):
        raise DriverError(f"SMS driver {spec!r} has no send(recipient, text) method")
    if not getattr(driver, "name", None):
        driver.name = spec
    return driver


_driver: Driver | None = None
_driver_lock = threading.Lock()


def driver() -> Driver:
    """The gateway driver of this process: the configured one, else the log driver."""
    global _driver
    with _driver_lock:
        if _driver is None:
            spec = os.environ.get(ENV_DRIVER, "").strip()
            _driver = load_driver(spec) if spec else LogDriver()
        return _driver


def use_driver(d: Driver | None) -> None:
    """Install a driver (tests, embedding); None goes back to the configuration."""
    global _driver
    with _driver_lock:
        _driver = d


def send(recipient: str, text: str) -> tuple[str, Delivery]:
    """Hand one message to the driver. Never raises: a driver failure is a ``failed`` delivery.

    Returns the driver's name and the delivery.
    """
    try:
        d = driver()
    except Exception as exc:  # a misconfigured driver: record the failure on the message
        return os.environ.get(ENV_DRIVER, "?"), Delivery("failed", error=str(exc)[:500])
    try:
        result = d.send(recipient, text[:MAX_TEXT])
        if not isinstance(result, Delivery):
            raise TypeError(f"driver returned {type(result).__name__}, not a Delivery")
        return d.name, result
    except Exception as exc:
        log.warning("SMS driver %s failed for %s: %s", d.name, recipient, exc)
        return d.name, Delivery("failed", error=f"{type(exc).__name__}: {exc}"[:500])


def status(provider_id: str) -> Delivery | None:
    """Ask the driver for a later delivery state; None when it cannot tell."""
    try:
        d = driver()
        ask = getattr(d, "status", None)
        if ask is None:
            return None
        result = ask(provider_id)
        return result if isinstance(result, Delivery) else None
    except Exception as exc:
        log.warning("SMS status query failed for %s: %s", provider_id, exc)
        return None
