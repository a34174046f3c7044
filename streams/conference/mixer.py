"""The audio mixer (混音, mix-minus): everyone hears everyone but themselves.

Receiver tasks push each participant's decoded audio (48 kHz) into an `AudioInput`. The `AudioMixer`
thread ticks every 20 ms by the wall clock, takes 960 samples from each input (silence when it has
none, old audio dropped when more than `max_buffer_ms` piled up), adds them once and gives every
participant the total minus their own voice. aiortc then encodes one Opus stream per participant in
its executor, so neither mixing nor encoding runs on the event loop with the video.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from fractions import Fraction
from typing import Callable

import av
import numpy as np

log = logging.getLogger(__name__)

RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
TIME_BASE = Fraction(1, RATE)


def to_mono(frame: av.AudioFrame) -> np.ndarray:
    """An s16 (packed or planar, mono or stereo) 48 kHz frame as mono int16 samples."""
    if frame.sample_rate != RATE:
        raise ValueError(f"audio must be {RATE} Hz, got {frame.sample_rate}")
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.name == "s16":  # packed: one row, channels interleaved
        samples = data.reshape(-1, channels)
    elif frame.format.name == "s16p":
        samples = data.T
    else:
        raise ValueError(f"audio must be s16, got {frame.format.name}")
    if channels == 1:
        return samples[:, 0].astype(np.int16, copy=True)
    return samples.astype(np.int32).mean(axis=1).astype(np.int16)


class AudioInput:
    """Buffered samples of one participant; `push` from the loop, `take` from the mixer thread."""

    def __init__(self, max_buffer_ms: int = 120) -> None:
        self.max_samples = RATE * max_buffer_ms // 1000
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self.muted = False
        self.level = 0.0  # smoothed RMS of what was mixed
        self.dropped = 0

    def push(self, samples: np.ndarray) -> None:
        with self._lock:
            self._chunks.append(samples)
            self._size += len(samples)
            while self._size - len(self._chunks[0]) >= self.max_samples:
                old = self._chunks.popleft()  # keep latency bounded: drop the oldest audio
                self._size -= len(old)
                self.dropped += len(old)

    def take(self, n: int = FRAME_SAMPLES) -> np.ndarray | None:
        """Exactly n samples (padded with silence), or None when nothing is buffered."""
        with self._lock:
            if not self._chunks:
                return None
            out = np.zeros(n, np.int16)
            filled = 0
            while filled < n and self._chunks:
                chunk = self._chunks[0]
                k = min(n - filled, len(chunk))
                out[filled: filled + k] = chunk[:k]
                filled += k
                if k == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[k:]
                self._size -= k
            return out


def mix_minus(inputs: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """For each key the sum of every other non-None input, clipped to int16 (pure function)."""
    total = np.zeros(FRAME_SAMPLES, np.int32)
    for samples in inputs.values():
        if samples is not None:
            total += samples
    out: dict[str, np.ndarray] = {}
    for key, own in inputs.items():
        mix = total - own if own is not None else total
        out[key] = np.clip(mix, -32768, 32767).astype(np.int16)
    return out


def audio_frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


class AudioMixer(threading.Thread):
    """Mixes every 20 ms; `deliver(pid, frame)` is called (from this thread) for each participant."""

    def __init__(self, deliver: Callable[[str, av.AudioFrame], None], name: str = "conference") -> None:
        super().__init__(name=f"mixer-{name}", daemon=True)
        self.deliver = deliver
        self._inputs: dict[str, AudioInput] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._pts = 0
        self.ticks = 0
        self.mix_ms = 0.0

    def add(self, pid: str) -> AudioInput:
        with self._lock:
            audio = self._inputs.get(pid)
            if audio is None:
                audio = self._inputs[pid] = AudioInput()
            return audio

    def remove(self, pid: str) -> None:
        with self._lock:
            self._inputs.pop(pid, None)

    def input(self, pid: str) -> AudioInput | None:
        return self._inputs.get(pid)

    def levels(self) -> dict[str, float]:
        with self._lock:
            return {pid: a.level for pid, a in self._inputs.items()}

    def stop(self) -> None:
        self._halt.set()

    def tick(self) -> None:
        """Mix one 20 ms frame for everyone."""
        with self._lock:
            inputs = dict(self._inputs)
        taken: dict[str, np.ndarray | None] = {}
        for pid, audio in inputs.items():
            samples = audio.take()
            if samples is not None:
                rms = float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)))
                audio.level = 0.8 * audio.level + 0.2 * rms
            else:
                audio.level *= 0.8
            taken[pid] = None if audio.muted else samples
        mixes = mix_minus(taken)
        for pid, mix in mixes.items():
            self.deliver(pid, audio_frame(mix, self._pts))
        self._pts += FRAME_SAMPLES
        self.ticks += 1

    def run(self) -> None:
        period = FRAME_SAMPLES / RATE
        next_at = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            if next_at > now:
                if self._halt.wait(next_at - now):
                    break
            elif now - next_at > 0.2:
                next_at = now  # fell far behind: resynchronise rather than burst
            next_at += period
            t0 = time.perf_counter()
            try:
                self.tick()
            except Exception:
                log.exception("conference audio mixer failed on a frame")
            self.mix_ms = 0.9 * self.mix_ms + 0.1 * (time.perf_counter() - t0) * 1000
