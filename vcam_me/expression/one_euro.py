"""One-Euro filter (Casiez, Roussel & Vogel, CHI 2012), vectorised over channels.

A low-pass filter whose cutoff rises with the signal's speed: steady when the face is still
(removes tracker jitter), quick when it moves (adds little lag). It is causal: each output
depends only on past and present samples.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Filters a vector signal sampled at irregular times (ms).

    Args:
        min_cutoff_hz: cutoff when the signal is still.
        beta: how much the cutoff rises per unit of speed (units of the signal per second).
        derivative_cutoff_hz: cutoff used to smooth the speed estimate.
    """

    def __init__(self, min_cutoff_hz: float, beta: float, derivative_cutoff_hz: float = 1.0) -> None:
        self.min_cutoff_hz = float(min_cutoff_hz)
        self.beta = float(beta)
        self.derivative_cutoff_hz = float(derivative_cutoff_hz)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t_ms: float | None = None

    def __call__(self, value: np.ndarray, t_ms: float) -> np.ndarray:
        x = np.asarray(value, dtype=np.float64)
        if self._x is None or self._t_ms is None or t_ms <= self._t_ms:
            if self._x is None or self._t_ms is None:
                self._x, self._dx, self._t_ms = x.copy(), np.zeros_like(x), float(t_ms)
            return self._x.astype(np.float32)
        dt = (t_ms - self._t_ms) / 1000.0
        dx = (x - self._x) / dt
        a_d = _alpha(self.derivative_cutoff_hz, dt)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = self.min_cutoff_hz + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        self._x = self._x + a * (x - self._x)
        self._t_ms = float(t_ms)
        return self._x.astype(np.float32)
