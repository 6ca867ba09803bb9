"""Automatic mode: micro-expressions at random moments, at a configured mean rate.

Arrivals form a Poisson process on the render clock: the gaps between scheduled arrivals are
exponential with mean ``60 000 / rate_per_min`` ms, drawn from a seeded generator, and each
gap is counted from the previous *scheduled* arrival, so waiting for a good moment does not
lower the long-run rate. When an arrival is due, a type is drawn by weight (the library's
weights times the persona's) among the types that can show now; if none can, the arrival
waits, and it is given up after :data:`MAX_WAIT_MS` (counted in :attr:`AutoTrigger.dropped`).

What "can show now" means (rules on the tracked AUs, so the event stays readable):

* **never two conflicting events at once**: a type that shares an AU, or an antagonist pair,
  with a running event is not drawn (:meth:`MicroEngine.conflicts`);
* **not during a blink**: nothing starts while either eye is more than
  :data:`BLINK_CLOSED` closed (AU43), nor within :data:`AFTER_BLINK_MS` after it opens: a
  brow or lid movement under a closing lid is lost, and a face event at a blink reads as part
  of the blink;
* **not at speech peaks on the mouth**: while the jaw is open more than :data:`JAW_OPEN`
  (AU26), or the microphone level (``speech_level`` in [0, 1], optional) is above
  :data:`SPEECH_PEAK`, types that move the lower face are not drawn: the talking mouth would
  hide them. Brow and eye types still may.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vcam_me.errors import MicroExpressionError
from vcam_me.expression.micro.engine import MicroEngine, draw_index
from vcam_me.expression.micro.events import MicroEvent
from vcam_me.expression.micro.library import MicroType
from vcam_me.types import AU_INDEX

#: Eye closure (AU43) above which a blink is in progress.
BLINK_CLOSED = 0.5
#: Quiet time after a blink before an event may start (ms).
AFTER_BLINK_MS = 150.0
#: Jaw opening (AU26) above which the mouth is busy talking.
JAW_OPEN = 0.35
#: Microphone level (0..1) above which speech is at a peak.
SPEECH_PEAK = 0.6
#: A due arrival that finds no moment to show within this long is given up (ms).
MAX_WAIT_MS = 2000.0
#: FACS numbers of the lower face (mouth, lips, jaw, chin): hidden by a talking mouth.
LOWER_FACE_AUS = frozenset({10, 12, 14, 15, 16, 17, 18, 20, 22, 24, 25, 26, 27, 28})

_AU43 = (AU_INDEX["AU43_L"], AU_INDEX["AU43_R"])
_AU26 = AU_INDEX["AU26"]


class AutoTrigger:
    """Fires library types through ``engine`` as a seeded Poisson process of ``rate_per_min``.

    ``persona`` multiplies the library's weight of each named type (0 = never; types not named
    keep their weight): e.g. ``{"suppressed_smile": 3, "brow_lowerer": 0}`` for a cheerful one.
    Call :meth:`tick` once per rendered frame.
    """

    def __init__(self, engine: MicroEngine, rate_per_min: float, persona: Mapping[str, float] | None = None,
                 seed: int | None = None) -> None:
        if not 0 <= rate_per_min <= 600:
            raise MicroExpressionError(f"rate_per_min = {rate_per_min}: allowed 0..600")
        self.engine = engine
        self.rate_per_min = float(rate_per_min)
        persona = dict(persona or {})
        for name, factor in persona.items():
            if name not in engine.library:
                raise MicroExpressionError(f"persona names unknown type {name!r} (known: {', '.join(engine.library.names)})")
            if not isinstance(factor, (int, float)) or factor < 0:
                raise MicroExpressionError(f"persona weight of {name} = {factor!r}: expected a number ≥ 0")
        self._types: list[MicroType] = []
        weights = []
        for mtype in engine.library.types.values():
            w = mtype.weight * float(persona.get(mtype.name, 1.0))
            if w > 0:
                self._types.append(mtype)
                weights.append(w)
        self._weights = np.asarray(weights, np.float64)
        self._lower_face = np.array([bool(t.au_numbers & LOWER_FACE_AUS) for t in self._types])
        self._blocked = [engine.library.blocked_by(t.au_numbers) for t in self._types]
        self._rng = np.random.default_rng(seed)
        self._next_ms: float | None = None
        self._blink_ended_ms = -np.inf
        self._blinking = False
        #: Due arrivals given up because no type could show within MAX_WAIT_MS.
        self.dropped = 0

    def _gap_ms(self) -> float:
        return float(self._rng.exponential(60_000.0 / self.rate_per_min))

    def tick(self, t_ms: float, tracked_au: np.ndarray, *, speech_level: float | None = None) -> MicroEvent | None:
        """Start at most one event at render time ``t_ms`` if one is due and can show."""
        if self.rate_per_min <= 0 or not self._types:
            return None
        t = float(t_ms)
        if self._next_ms is None:
            self._next_ms = t + self._gap_ms()
        blink = max(float(tracked_au[_AU43[0]]), float(tracked_au[_AU43[1]])) > BLINK_CLOSED
        if self._blinking and not blink:
            self._blink_ended_ms = t
        self._blinking = blink
        while t - self._next_ms > MAX_WAIT_MS:  # due long ago and never shown: give it up
            self.dropped += 1
            self._next_ms += self._gap_ms()
        if t < self._next_ms or blink or t - self._blink_ended_ms < AFTER_BLINK_MS:
            return None
        allowed = ~self._lower_face if self._mouth_busy(tracked_au, speech_level) else np.ones(len(self._types), bool)
        busy = self.engine.busy_numbers(t)
        if busy:
            for i, blocked in enumerate(self._blocked):
                if allowed[i] and blocked & busy:
                    allowed[i] = False
        if not allowed.any():
            return None
        mtype = self._types[draw_index(self._rng, np.where(allowed, self._weights, 0.0).tolist())]
        event = self.engine.trigger(mtype.name, t, source="auto")
        if event is not None:
            self._next_ms += self._gap_ms()
        return event

    @staticmethod
    def _mouth_busy(tracked_au: np.ndarray, speech_level: float | None) -> bool:
        return float(tracked_au[_AU26]) > JAW_OPEN or (speech_level is not None and speech_level > SPEECH_PEAK)
