"""Idle life: what the avatar does while the face is lost or the user has paused tracking.

A face that stops dead reads as a frozen call, so while nobody drives the avatar it keeps
the small motions of a person sitting still and listening:

* **breathing**: one breath every 3–5 s (12–20 per minute at rest), each a little
  different; a slight lift of the head on the in-breath and a hint of jaw movement;
* **blinks** (AU43, both eyes together): spontaneous blinking at rest runs at about
  15–20 per minute (Bentivoglio et al. 1997 measured a mean of 17 at rest, 26 in
  conversation, 4.5 reading). The gaps between blinks are right-skewed, so they are drawn
  from a gamma distribution rather than at a steady beat; a blink lasts 100–400 ms and the
  lid comes down faster than it goes up (closing about a third of the time, opening two
  thirds); now and then a second blink follows straight after the first;
* **glances**: the eyes hold a fixation for 0.5–3 s, then jump in a saccade (tens of ms)
  to a nearby point; small amplitudes, drifting back toward the camera;
* **head sway**: slow, low-amplitude motion in yaw, pitch and roll, a sum of a few
  incommensurate sinusoids per axis so it never visibly repeats;
* **micro-expressions**: now and then one of a configured set of library types, fired
  through the micro-expression engine like any other trigger;
* **voice**: while the face is lost and the microphone hears speech, the jaw (AU26, and so
  AU25) opens with the voice level, so the avatar still seems to talk.

Hand-over. :meth:`IdleAnimator.sample` returns, with the idle pose, a ``weight`` in [0, 1]:
how much the idle layer owns the face now (0 = live tracking, 1 = idle). It moves toward 1
when the face is lost or tracking is paused, toward 0 when the face is back, along a
smoothstep of ``handover_ms`` (≤ 300 ms), so :func:`handover_blend` of the last tracked
state and the idle state never jumps. Breathing, blinks and glances run on even while the
weight is 0, so the idle layer itself is continuous when it takes over.

Every random choice comes from one seeded generator; all motions are scheduled on the
timeline passed to :meth:`sample`, so the same seed and the same times give the same output.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from vcam_me.config import IdleOptions
from vcam_me.expression.action_units import fill_derived
from vcam_me.types import AU_CHANNELS, AU_INDEX

log = logging.getLogger(__name__)

# Blink timing (see the module docstring). Duration is log-normal around 200 ms, kept in the
# 100-400 ms range that blink recordings report; the closing share of it is 30-40 %.
_BLINK_MEDIAN_MS = 200.0
_BLINK_LOG_SD = 0.28
_BLINK_MIN_MS, _BLINK_MAX_MS = 100.0, 400.0
_BLINK_CLOSING_SHARE = (0.30, 0.40)
#: Gamma shape of the gaps between blink starts (coefficient of variation 1/sqrt(2)).
_BLINK_GAP_SHAPE = 2.0
#: No two blinks closer than this (ms, start to start) except the pairs of a double blink.
_BLINK_REFRACTORY_MS = 600.0
#: Gap between the end of a blink and the start of the second one of a double blink (ms).
_DOUBLE_BLINK_GAP_MS = (40.0, 160.0)
#: Lids close fully on most blinks; some blinks stop a little short.
_BLINK_PEAK = (0.85, 1.0)

# Breathing: each breath's rate varies by ±15 % around the configured rate; the in-breath
# takes 40 % of the cycle.
_BREATH_RATE_JITTER = 0.15
_INHALE_SHARE = 0.4

# Glances: fixation length (ms) and saccade duration (ms). Saccades of a few degrees take
# 25-50 ms; vertical glances are smaller than horizontal ones.
_FIXATION_MS = (500.0, 3000.0)
_SACCADE_MS = (25.0, 50.0)
_GAZE_VERTICAL_SHARE = 0.6
#: Chance that a glance returns toward the camera rather than to a random nearby point.
_GAZE_RECENTRE = 0.35
#: Smallest glance, as a share of gaze_range (smaller ones would not read as a glance).
_MIN_GLANCE = 0.1

# Head sway: three sinusoids per axis with periods of 4-30 s; pitch and roll move less than yaw.
_SWAY_HZ = (1 / 30, 1 / 4)
_SWAY_AXIS_SCALE = np.array([1.0, 0.6, 0.4])  # yaw, pitch, roll

# The voice-driven jaw opens in ~25 ms and closes in ~60 ms: quick enough to follow
# syllables, smooth enough that the 20 ms steps of the level meter do not show.
_JAW_ATTACK_MS = 25.0
_JAW_RELEASE_MS = 60.0

# Idle micro-expressions keep clear of blinks, so both read: none starts within this time
# (ms) before a blink (a micro-expression lasts up to 500 ms) or after one ends.
_MICRO_BEFORE_BLINK_MS = 550.0
_MICRO_AFTER_BLINK_MS = 300.0

_AU43 = (AU_INDEX["AU43_L"], AU_INDEX["AU43_R"])
_AU26 = AU_INDEX["AU26"]


class IdleSample(NamedTuple):
    """One instant of idle animation (unpacks as ``au, gaze, pose, weight``).

    Attributes:
        au: ``(len(AU_CHANNELS),) float32`` in [0, 1], the idle face. The derived channels
            (AU25, AU27) are left at 0: fill them after composing (:func:`handover_blend`
            does), since the lips part with the composed jaw, not with the idle one alone.
        gaze: ``(2, 2) float32`` in [-1, 1], rows (left, right) eye, columns (horizontal, vertical).
        pose: ``(3,) float32`` yaw, pitch, roll in degrees around the neutral pose.
        weight: how much the idle layer owns the face now, 0 (live) … 1 (idle).
    """

    au: np.ndarray
    gaze: np.ndarray
    pose: np.ndarray
    weight: float


class MicroTrigger(Protocol):
    """What the idle animator needs of the micro-expression engine."""

    def trigger(self, type_name: str, t_ms: int, *, side: str | None = None, peak: float | None = None,
                source: str = "api") -> object | None: ...


@dataclass(frozen=True, slots=True)
class Blink:
    """One blink on the timeline: lid closing from ``start_ms`` for ``closing_ms``, then opening."""

    start_ms: float
    closing_ms: float
    opening_ms: float
    peak: float

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.closing_ms + self.opening_ms

    def closure(self, t_ms: float) -> float:
        """Lid closure (AU43) at ``t_ms``: raised-cosine down, raised-cosine up, 0 outside."""
        u = t_ms - self.start_ms
        if u <= 0 or t_ms >= self.end_ms:
            return 0.0
        if u < self.closing_ms:
            return self.peak * 0.5 * (1 - math.cos(math.pi * u / self.closing_ms))
        v = (u - self.closing_ms) / self.opening_ms
        return self.peak * 0.5 * (1 + math.cos(math.pi * v))


@dataclass(frozen=True, slots=True)
class _Breath:
    start_ms: float
    period_ms: float

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.period_ms

    def depth(self, t_ms: float) -> float:
        """0 at rest (end of out-breath) … 1 at the top of the in-breath."""
        phase = (t_ms - self.start_ms) / self.period_ms
        if phase <= 0 or phase >= 1:
            return 0.0
        if phase < _INHALE_SHARE:
            return 0.5 * (1 - math.cos(math.pi * phase / _INHALE_SHARE))
        return 0.5 * (1 + math.cos(math.pi * (phase - _INHALE_SHARE) / (1 - _INHALE_SHARE)))


@dataclass(frozen=True, slots=True)
class _Fixation:
    start_ms: float
    saccade_ms: float
    origin: tuple[float, float]
    target: tuple[float, float]
    hold_ms: float

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.saccade_ms + self.hold_ms

    def gaze(self, t_ms: float) -> tuple[float, float]:
        u = (t_ms - self.start_ms) / self.saccade_ms
        if u >= 1:
            return self.target
        s = 0.5 * (1 - math.cos(math.pi * max(u, 0.0)))
        return (self.origin[0] + s * (self.target[0] - self.origin[0]),
                self.origin[1] + s * (self.target[1] - self.origin[1]))


def smoothstep(x: float) -> float:
    """0 → 1 with zero slope at both ends; the steepest slope is 1.5."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def handover_blend(live: tuple[np.ndarray, np.ndarray, np.ndarray], idle: IdleSample
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(au, gaze, pose)`` between the live state and the idle state by the idle weight.

    The derived channels (AU25, AU27) are computed again from the blend: lips part with the
    blended jaw, which a blend of the two sides' derived values would not give.
    """
    w = float(idle.weight)
    au, gaze, pose = (np.asarray(x, np.float32) for x in live)
    blended = np.clip((1 - w) * au + w * idle.au, 0.0, 1.0).astype(np.float32)
    return (
        fill_derived(blended),
        ((1 - w) * gaze + w * idle.gaze).astype(np.float32),
        ((1 - w) * pose + w * idle.pose).astype(np.float32),
    )


class IdleAnimator:
    """Breathing, blinks, glances, head sway, voice-driven jaw and occasional micro-expressions.

    :meth:`sample` is called on the render thread with non-decreasing times;
    :meth:`pause`, :meth:`resume` and :meth:`toggle_pause` may be called from any thread
    (a tray menu, a hotkey).
    """

    def __init__(
        self,
        options: IdleOptions | None = None,
        seed: int | None = None,
        *,
        voice_level: Callable[[], float] | None = None,
        engine: MicroTrigger | None = None,
    ) -> None:
        """``voice_level`` returns the microphone level in dBFS (e.g. ``Microphone.level``);
        ``engine`` receives the idle micro-expressions (``None``: the face shows none)."""
        self.options = options or IdleOptions()
        self.voice_level = voice_level
        self.engine = engine
        self._rng = np.random.default_rng(seed)
        self._pause_lock = threading.Lock()
        self._paused = False
        self._t_last: float | None = None
        self._progress = 0.0  # hand-over progress toward idle, 0..1; the weight is its smoothstep
        self._jaw_voice = 0.0
        self._blinks: deque[Blink] = deque()
        self._next_blink_ms = 0.0
        self._last_blink_end_ms = -math.inf
        self._breaths: deque[_Breath] = deque()
        self._fixations: deque[_Fixation] = deque()
        self._next_micro_ms: float | None = None
        #: (t_ms, type) of the idle micro-expressions fired lately (a bounded window: calls are long).
        self.micro_fired: deque[tuple[int, str]] = deque(maxlen=1000)
        freq = self._rng.uniform(*_SWAY_HZ, size=(3, 3))
        amp = np.array([1.0, 0.6, 0.35])
        amp = amp / math.sqrt(float(np.sum(amp**2)) / 2)  # each axis: standard deviation 1
        self._sway = (2 * math.pi * freq / 1000.0, self._rng.uniform(0, 2 * math.pi, size=(3, 3)), amp)

    # -- pause (any thread) ------------------------------------------------------------
    def pause(self) -> None:
        """Stop following the face: the avatar goes idle until :meth:`resume`."""
        with self._pause_lock:
            self._paused = True

    def resume(self) -> None:
        with self._pause_lock:
            self._paused = False

    def toggle_pause(self) -> bool:
        """Pause if running, resume if paused; returns whether tracking is now paused."""
        with self._pause_lock:
            self._paused = not self._paused
            paused = self._paused
        log.info("tracking %s", "paused: the avatar is idle" if paused else "resumed")
        return paused

    @property
    def paused(self) -> bool:
        with self._pause_lock:
            return self._paused

    # -- render thread -----------------------------------------------------------------
    def sample(self, t_ms: float, face_present: bool) -> IdleSample:
        """The idle face at ``t_ms`` and how much of the face it owns.

        ``face_present``: whether live tracking sees the face now. The weight rises to 1 when
        it is ``False`` or tracking is paused, and falls to 0 otherwise, each within
        ``handover_ms``.
        """
        t = float(t_ms)
        want_idle = self.paused or not face_present
        if self._t_last is None:
            self._progress = 1.0 if want_idle else 0.0  # nothing to hand over from yet
            self._next_blink_ms = t + self._blink_gap_ms() * self._rng.uniform(0.2, 1.0)
            dt = 0.0
        else:
            dt = max(t - self._t_last, 0.0)
        self._t_last = max(t, self._t_last or t)
        step = dt / self.options.handover_ms
        self._progress = min(self._progress + step, 1.0) if want_idle else max(self._progress - step, 0.0)
        weight = smoothstep(self._progress)

        o = self.options
        au = np.zeros(len(AU_CHANNELS), np.float32)
        au[_AU43[0]] = au[_AU43[1]] = self._blink_closure(t)
        breath = self._breath_depth(t)
        au[_AU26] = min(o.breath_jaw * breath + self._voice_jaw(dt, active=weight > 0.0), 1.0)

        gx, gy = self._gaze(t)
        gaze = np.array([[gx, gy], [gx, gy]], np.float32)

        omega, phase, amp = self._sway
        pose = (np.sin(omega * t + phase) @ amp * (_SWAY_AXIS_SCALE * o.sway_deg)).astype(np.float32)
        pose[1] += o.breath_pitch_deg * (breath - 0.5)

        if weight >= 0.99:
            self._fire_due_micro(t)
        elif self._next_micro_ms is not None and t >= self._next_micro_ms:
            self._next_micro_ms = None  # due while the live face was shown: draw a new time later
        return IdleSample(au, gaze, pose, weight)

    # -- the motions -------------------------------------------------------------------
    def _blink_gap_ms(self) -> float:
        """Gap from one blink episode's start to the next; the rate counts double blinks."""
        o = self.options
        if o.blinks_per_min <= 0:
            return math.inf
        episodes_per_min = o.blinks_per_min / (1.0 + o.double_blink_probability)
        mean = 60_000.0 / episodes_per_min
        spread = max(mean - _BLINK_REFRACTORY_MS, mean * 0.2)
        return mean - spread + float(self._rng.gamma(_BLINK_GAP_SHAPE, spread / _BLINK_GAP_SHAPE))

    def _new_blink(self, start_ms: float) -> Blink:
        duration = float(np.clip(_BLINK_MEDIAN_MS * math.exp(_BLINK_LOG_SD * self._rng.standard_normal()),
                                 _BLINK_MIN_MS, _BLINK_MAX_MS))
        closing = duration * float(self._rng.uniform(*_BLINK_CLOSING_SHARE))
        return Blink(start_ms, closing, duration - closing, float(self._rng.uniform(*_BLINK_PEAK)))

    def _blink_closure(self, t: float) -> float:
        while self._next_blink_ms <= t + _MICRO_BEFORE_BLINK_MS:  # known ahead, for the micro-expressions
            blink = self._new_blink(self._next_blink_ms)
            self._blinks.append(blink)
            if self._rng.random() < self.options.double_blink_probability:
                gap = float(self._rng.uniform(*_DOUBLE_BLINK_GAP_MS))
                self._blinks.append(self._new_blink(blink.end_ms + gap))
            self._next_blink_ms = max(self._next_blink_ms + self._blink_gap_ms(), self._blinks[-1].end_ms + 100.0)
        while self._blinks and self._blinks[0].end_ms < t:
            self._last_blink_end_ms = self._blinks.popleft().end_ms
        return max((b.closure(t) for b in self._blinks if b.start_ms < t), default=0.0)

    def _breath_depth(self, t: float) -> float:
        if not self._breaths:
            period = self._breath_period_ms()
            self._breaths.append(_Breath(t - period * float(self._rng.random()), period))
        while self._breaths[-1].end_ms <= t:
            self._breaths.append(_Breath(self._breaths[-1].end_ms, self._breath_period_ms()))
        while self._breaths[0].end_ms <= t:
            self._breaths.popleft()
        return self._breaths[0].depth(t)

    def _breath_period_ms(self) -> float:
        rate = self.options.breaths_per_min * (1 + _BREATH_RATE_JITTER * float(self._rng.uniform(-1, 1)))
        return 60_000.0 / rate

    def _gaze(self, t: float) -> tuple[float, float]:
        if not self._fixations:
            self._fixations.append(_Fixation(t, 1.0, (0.0, 0.0), (0.0, 0.0), self._fixation_ms()))
        while self._fixations[-1].end_ms <= t:
            last = self._fixations[-1]
            self._fixations.append(_Fixation(last.end_ms, float(self._rng.uniform(*_SACCADE_MS)), last.target,
                                             self._glance_target(last.target), self._fixation_ms()))
        while self._fixations[0].end_ms <= t:
            self._fixations.popleft()
        return self._fixations[0].gaze(t)

    def _fixation_ms(self) -> float:
        # Log-uniform: short fixations are more common than long ones.
        lo, hi = _FIXATION_MS
        return float(math.exp(self._rng.uniform(math.log(lo), math.log(hi))))

    def _glance_target(self, current: tuple[float, float]) -> tuple[float, float]:
        r = self.options.gaze_range
        if r <= 0:
            return (0.0, 0.0)
        for _ in range(8):  # a glance goes somewhere: a target on top of the current one is drawn again
            if self._rng.random() < _GAZE_RECENTRE:
                x, y = self._rng.normal(0.0, 0.15 * r, size=2)
            else:
                x, y = np.asarray(current) + self._rng.normal(0.0, 0.5 * r, size=2)
            x = min(max(float(x), -r), r)
            y = min(max(float(y), -r * _GAZE_VERTICAL_SHARE), r * _GAZE_VERTICAL_SHARE)
            if math.hypot(x - current[0], y - current[1]) >= _MIN_GLANCE * r:
                break
        return (x, y)

    def _voice_jaw(self, dt: float, *, active: bool) -> float:
        o = self.options
        if not (o.voice_jaw and self.voice_level is not None and active):
            self._jaw_voice = 0.0
            return 0.0
        level = float(self.voice_level())
        opening = (level - o.voice_floor_dbfs) / (o.voice_full_dbfs - o.voice_floor_dbfs)
        target = o.voice_jaw_max * min(max(opening, 0.0), 1.0) if math.isfinite(level) else 0.0
        tau = _JAW_ATTACK_MS if target > self._jaw_voice else _JAW_RELEASE_MS
        self._jaw_voice += (1.0 - math.exp(-dt / tau)) * (target - self._jaw_voice)
        return self._jaw_voice

    def _fire_due_micro(self, t: float) -> None:
        o = self.options
        if self.engine is None or o.micro_per_min <= 0 or not o.micro_types:
            return
        if self._next_micro_ms is None:
            self._next_micro_ms = t + float(self._rng.exponential(60_000.0 / o.micro_per_min))
            return
        if t < self._next_micro_ms:
            return
        near_blink = t < self._last_blink_end_ms + _MICRO_AFTER_BLINK_MS or any(
            b.start_ms - _MICRO_BEFORE_BLINK_MS < t < b.end_ms + _MICRO_AFTER_BLINK_MS for b in self._blinks)
        if near_blink or self._jaw_voice > 0.05:  # would not read during a blink or speech
            return
        name = o.micro_types[int(self._rng.integers(len(o.micro_types)))]
        event = self.engine.trigger(name, int(t), source="idle")
        if event is not None:
            self.micro_fired.append((int(t), name))
        self._next_micro_ms = None
