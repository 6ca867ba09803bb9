"""The one monotonic clock (integer milliseconds) and small timing helpers."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds on the monotonic clock shared by every stage."""
    return time.monotonic_ns() // 1_000_000


def now_us() -> int:
    return time.monotonic_ns() // 1_000


class Pacer:
    """Sleeps until the next tick of a fixed-rate clock, without drifting.

    If the caller falls behind by more than one period, the schedule is re-anchored
    instead of bursting to catch up (a late frame is better than a burst of frames).
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period_ns = int(round(1e9 / fps))
        self._next_ns: int | None = None

    def wait(self) -> int:
        """Block until the next tick; return the tick's time in ms."""
        now = time.monotonic_ns()
        if self._next_ns is None:
            self._next_ns = now
        elif now - self._next_ns > self.period_ns:
            self._next_ns = now  # fell behind: re-anchor
        else:
            delay = self._next_ns - now
            if delay > 0:
                time.sleep(delay / 1e9)
        tick = self._next_ns
        self._next_ns += self.period_ns
        return tick // 1_000_000

    def next_tick_ns(self) -> int | None:
        """When the next tick is due (monotonic ns), or None before the first."""
        return self._next_ns

    def shift(self, delta_ns: int) -> None:
        """Move the schedule by ``delta_ns`` (positive = later); used to phase-lock to a camera."""
        if self._next_ns is not None:
            limit = self.period_ns // 4  # never distort one frame interval by more than 25 %
            self._next_ns += max(-limit, min(limit, int(delta_ns)))


class RateMeter:
    """Exponential moving average of the event rate (events per second)."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = smoothing
        self.fps = 0.0
        self._last_ns: int | None = None

    def tick(self) -> float:
        now = time.monotonic_ns()
        if self._last_ns is not None and now > self._last_ns:
            inst = 1e9 / (now - self._last_ns)
            self.fps = inst if self.fps == 0.0 else self.fps + self.smoothing * (inst - self.fps)
        self._last_ns = now
        return self.fps
