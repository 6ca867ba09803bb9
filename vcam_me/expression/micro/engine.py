"""The micro-expression engine: starts events, keeps the running ones, and says at each render
instant how much each AU channel is pushed.

Events are started by triggers (automatic mode, hotkeys, scripts, the API) through
:meth:`MicroEngine.trigger` (a micro-expression) or :meth:`MicroEngine.hold` /
:meth:`MicroEngine.release` (a held, macro expression). Each gets, from the library and a
seeded random generator: an AU pattern (a variant, plus optional AUs), a side, a peak intensity
and onset/offset durations. A new event that would conflict with one still running (a shared
AU, or an antagonist pair; see :meth:`MicroLibrary.conflicting`) is refused: the trigger gets
``None`` and nothing is logged.

Injection rule (:meth:`MicroEngine.injected`), per AU channel at render time t:

* each running event contributes ``a = peak × relative peak × range × envelope(t)``, where
  ``range`` is the user's calibrated range of that channel in the state's units (1 when the
  tracked AUs are already normalised to it, the default);
* the contributions are summed and capped at 1: ``A = min(1, Σ a)``;
* the increment added to the tracked value ``x`` is ``A × (1 − x)``.

So the output is ``x + A(1 − x)``: exactly ``A`` on a neutral channel; on an AU that is already
active a *relative* increment (the same fraction of the headroom that is left), which never
passes 1 and never clips, so the envelope's shape survives on top of a smile or a frown.

Thread-safe: a hotkey thread may trigger while the render thread asks for injections.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace

import numpy as np

from vcam_me.config import MicroOptions
from vcam_me.errors import MicroExpressionError
from vcam_me.expression.micro.envelope import held_envelope, micro_envelope
from vcam_me.expression.micro.events import SOURCES, MicroEvent
from vcam_me.expression.micro.library import (
    SIDES,
    MicroLibrary,
    MicroType,
    au_number,
    expand_aus,
    is_sided,
)
from vcam_me.types import AU_CHANNELS, AU_INDEX

#: Finished events stay in the running set this long after the newest time seen, so a slightly
#: late render call still draws them; conflict checks further back read the whole log.
_KEEP_AFTER_END_MS = 1000.0


@dataclass
class _Running:
    event: MicroEvent
    log_index: int
    channels: np.ndarray  # int indices into AU_CHANNELS
    amplitude: np.ndarray  # peak × relative peak × range, per channel
    numbers: frozenset[int]  # FACS numbers, for conflict checks
    rise_ms: float = 0.0  # held only
    fall_ms: float = 0.0
    release_ms: float | None = None

    def level(self, t_ms: float) -> float:
        e = self.event
        if t_ms <= e.start_ms or (e.end_ms is not None and t_ms >= e.end_ms):
            return 0.0
        if e.held:
            return held_envelope(t_ms, e.start_ms, self.rise_ms, self.release_ms, self.fall_ms)
        return micro_envelope(t_ms, e.start_ms, e.apex_ms, e.end_ms)

    def overlaps(self, start_ms: float, end_ms: float | None) -> bool:
        end = self.event.end_ms
        return (end is None or end > start_ms) and (end_ms is None or self.event.start_ms < end_ms)


class MicroEngine:
    """Micro-expressions from a library, with a seeded random generator and an event log.

    ``options`` is the ``[micro]`` configuration (intensity letters of micro and held
    expressions). ``seed`` makes every random choice reproducible; ``None`` draws one (kept in
    :attr:`seed` so a run can be repeated). ``calibration_range`` is the user's full range of
    each AU channel in the units of the tracked AUs (default: ones, as the expression mapper
    already normalises to the calibrated range when there is one).
    """

    def __init__(self, library: MicroLibrary, options: MicroOptions | None = None, *, seed: int | None = None,
                 calibration_range: np.ndarray | None = None) -> None:
        self.library = library
        self.options = options or MicroOptions()
        try:
            self.peak_range = library.intensity_range(self.options.intensity)
            self.held_peak_range = library.intensity_range(self.options.held_intensity)
        except ValueError as err:
            raise MicroExpressionError(str(err)) from None
        self.seed = int(np.random.SeedSequence().entropy % (2**63)) if seed is None else int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._range = np.ones(len(AU_CHANNELS), np.float64)
        if calibration_range is not None:
            self.set_calibration_range(calibration_range)
        self._lock = threading.RLock()
        self._running: list[_Running] = []
        self._log: list[MicroEvent] = []
        self._pruned_until = -math.inf  # events that ended before this left the running set
        self._render_ms: float | None = None  # the newest render time asked for

    # -- settings ------------------------------------------------------------------------------
    def set_calibration_range(self, calibration_range: np.ndarray) -> None:
        """Per-channel size of the user's calibrated range, ``(len(AU_CHANNELS),)``, in the
        tracked AUs' units: an event's peak is a fraction of it."""
        r = np.asarray(calibration_range, np.float64)
        if r.shape != (len(AU_CHANNELS),) or not np.all(np.isfinite(r)) or np.any(r < 0):
            raise ValueError(f"calibration range must be ({len(AU_CHANNELS)},) finite values ≥ 0, got shape {r.shape}")
        self._range = np.minimum(r, 1.0)

    # -- the log -------------------------------------------------------------------------------
    @property
    def events(self) -> tuple[MicroEvent, ...]:
        """Every event started so far, in the order started (held ones updated on release)."""
        with self._lock:
            return tuple(self._log)

    def running(self, t_ms: float) -> list[MicroEvent]:
        """Events that move the face at ``t_ms`` (held ones until they have faded)."""
        with self._lock:
            return [r.event for r in self._running if r.level(t_ms) > 0.0]

    # -- conflicts -----------------------------------------------------------------------------
    def conflicts(self, au_numbers: frozenset[int], start_ms: float, end_ms: float | None = None) -> bool:
        """Whether an event moving ``au_numbers`` over [start, end] (open-ended when ``end_ms``
        is None) would conflict with a running or scheduled one."""
        return bool(self.library.blocked_by(au_numbers) & self.busy_numbers(start_ms, end_ms))

    def busy_numbers(self, start_ms: float, end_ms: float | None = None) -> frozenset[int]:
        """AU numbers moved by events that overlap [start, end] (open-ended when ``end_ms`` is None)."""
        with self._lock:
            if start_ms >= self._pruned_until:
                return frozenset().union(*(r.numbers for r in self._running if r.overlaps(start_ms, end_ms)))
            # further back than the running set reaches (rare: a trigger far behind the render
            # clock): look through the whole log
            return frozenset().union(*(_numbers(e.aus) for e in self._log
                                       if (e.end_ms is None or e.end_ms > start_ms)
                                       and (end_ms is None or e.start_ms < end_ms)))

    # -- starting events -----------------------------------------------------------------------
    def trigger(self, type_name: str, t_ms: float, *, side: str | None = None, peak: float | None = None,
                source: str = "api") -> MicroEvent | None:
        """Start a micro-expression of ``type_name`` at ``t_ms`` (render clock).

        ``side`` and ``peak`` are drawn from the library and the configured intensity unless
        given. Returns the logged event, or ``None`` when it would conflict with a running one.
        """
        mtype = self.library[type_name]
        with self._lock:
            aus, side = self._choose_aus(mtype, side)
            peak = self._choose_peak(peak, self.peak_range)
            onset, offset = mtype.sample_phases(self._rng)
            start = float(t_ms)
            event = MicroEvent(mtype.name, aus, side, peak, start, start + onset, start + onset + offset,
                               _check_source(source), held=False)
            return self._start(event)

    def hold(self, type_name: str, t_ms: float, source: str = "hotkey", *, side: str | None = None,
             peak: float | None = None) -> MicroEvent | None:
        """Start a held (macro) expression: a smooth rise to ``peak`` (default: the configured
        held intensity), kept until :meth:`release`. ``None`` if it would conflict, or if this
        type is already held."""
        mtype = self.library[type_name]
        with self._lock:
            if any(r.event.held and r.release_ms is None and r.event.type == mtype.name for r in self._running):
                return None
            aus, side = self._choose_aus(mtype, side)
            peak = self._choose_peak(peak, self.held_peak_range)
            timing = self.library.held
            start = float(t_ms)
            event = MicroEvent(mtype.name, aus, side, peak, start, start + timing.onset_ms, None,
                               _check_source(source), held=True)
            return self._start(event, rise_ms=timing.onset_ms, fall_ms=timing.offset_ms)

    def release(self, type_name: str, t_ms: float) -> MicroEvent | None:
        """Let go of a held expression of ``type_name``: it falls smoothly from where it is.
        Returns the completed event (also updated in the log), or ``None`` if none was held."""
        with self._lock:
            for r in self._running:
                e = r.event
                if e.held and r.release_ms is None and e.type == type_name:
                    release = max(float(t_ms), e.start_ms)
                    r.release_ms = release
                    r.event = replace(e, apex_ms=min(e.apex_ms, release), end_ms=release + r.fall_ms)
                    self._log[r.log_index] = r.event
                    return r.event
            return None

    def release_all(self, t_ms: float) -> list[MicroEvent]:
        """Release every held expression (at the end of a run, so the log has no open event)."""
        with self._lock:
            held = [r.event.type for r in self._running if r.event.held and r.release_ms is None]
            return [e for name in held if (e := self.release(name, t_ms)) is not None]

    def _choose_aus(self, mtype: MicroType, side: str | None) -> tuple[dict[str, float], str]:
        rng = self._rng
        variants = mtype.variants
        pattern = variants[0] if len(variants) == 1 else variants[draw_index(rng, [v.p for v in variants])]
        aus = dict(pattern.aus)
        for group in mtype.optional:
            if rng.random() < group.p:
                for name, rel in group.aus.items():
                    aus[name] = max(aus.get(name, 0.0), rel)
        if side is None:
            side = SIDES[draw_index(rng, [mtype.laterality[s] for s in SIDES])]
        elif side not in SIDES:
            raise MicroExpressionError(f"side {side!r}: allowed left, right, both")
        if side != "both" and not any(is_sided(a) for a in aus):
            side = "both"  # nothing of this pattern has sides: it is drawn on both
        return expand_aus(aus, side), side

    def _choose_peak(self, peak: float | None, default_range: tuple[float, float]) -> float:
        if peak is None:
            return float(self._rng.uniform(*default_range))
        if not (isinstance(peak, (int, float)) and math.isfinite(peak) and 0 < peak <= 1):
            raise MicroExpressionError(f"peak {peak!r}: expected a fraction of the calibrated range in (0, 1]")
        return float(peak)

    def _start(self, event: MicroEvent, rise_ms: float = 0.0, fall_ms: float = 0.0) -> MicroEvent | None:
        numbers = _numbers(event.aus)
        # never prune past what is still being drawn (an event may be started ahead of the render clock)
        self._prune(event.start_ms if self._render_ms is None else min(event.start_ms, self._render_ms))
        if self.conflicts(numbers, event.start_ms, event.end_ms):
            return None
        channels = np.array([AU_INDEX[ch] for ch in event.aus], np.intp)
        rel = np.array(list(event.aus.values()), np.float64)
        amplitude = np.minimum(event.peak * rel * self._range[channels], 1.0)
        self._running.append(_Running(event, len(self._log), channels, amplitude, numbers, rise_ms, fall_ms))
        self._log.append(event)
        return event

    def _prune(self, t_ms: float) -> None:
        until = t_ms - _KEEP_AFTER_END_MS
        if until > self._pruned_until:
            self._pruned_until = until
            self._running = [r for r in self._running if r.event.end_ms is None or r.event.end_ms > until]

    # -- the render clock ----------------------------------------------------------------------
    def injected(self, t_ms: float, tracked_au: np.ndarray) -> np.ndarray:
        """The additive injection at render time ``t_ms`` on top of ``tracked_au``
        (``(len(AU_CHANNELS),)`` in [0, 1]): ``tracked + injected`` never exceeds 1."""
        total = np.zeros(len(AU_CHANNELS), np.float64)
        with self._lock:
            self._render_ms = t_ms if self._render_ms is None else max(self._render_ms, t_ms)
            self._prune(t_ms)
            for r in self._running:
                level = r.level(t_ms)
                if level > 0.0:
                    total[r.channels] += r.amplitude * level
        np.minimum(total, 1.0, out=total)
        headroom = 1.0 - np.clip(np.asarray(tracked_au, np.float64), 0.0, 1.0)
        return (total * headroom).astype(np.float32)


def _numbers(aus) -> frozenset[int]:
    return frozenset(n for ch in aus if (n := au_number(ch)) is not None)


def draw_index(rng: np.random.Generator, weights: list[float]) -> int:
    """Index drawn with probability proportional to ``weights`` (one uniform number)."""
    u = rng.random() * sum(weights)
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if u < acc:
            return i
    return max(i for i, w in enumerate(weights) if w > 0)


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise MicroExpressionError(f"event source {source!r}: allowed {', '.join(SOURCES)}")
    return source
