"""The expression stage as the pipeline sees it: tracked face + idle life + micro-expressions.

:class:`ExpressionComposer` has the mapper's protocol (``update`` on the camera clock,
``state_at`` on the render clock) and, at each render instant, combines three layers:

1. **tracked**: the :class:`~vcam_me.expression.mapper.ExpressionMapper`'s calibrated,
   interpolated AUs, gaze and pose;
2. **idle** (optional): a layer with ``sample(t_ms, face_present) -> (au, gaze, pose, weight)``
   that owns the face by ``weight`` (0 live … 1 idle) while the face is lost or tracking is
   paused. The base face is ``(1 − weight) × tracked + weight × idle``;
3. **injected**: the micro-expression engine's increments on top of that base (see
   :mod:`vcam_me.expression.micro.engine` for the saturating rule), after its triggers (auto
   mode, a script) have had their tick.

``components`` of the state are exactly these parts: ``"tracked"`` = (1 − weight) × tracked,
``"idle"`` = weight × idle, ``"injected"`` = the increments; on every driving channel
``au = tracked + idle + injected`` (≤ 1 by construction). The derived channels (AU25 lips
part, AU27 mouth stretch) are then recomputed from the combined face.

Thread-safe: the tracking thread calls :meth:`update`, the render thread :meth:`state_at`,
and hotkeys may call :meth:`trigger`, :meth:`hold` and :meth:`release` from their own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vcam_me.clock import now_ms
from vcam_me.expression.action_units import fill_derived
from vcam_me.expression.micro.engine import MicroEngine
from vcam_me.expression.micro.events import MicroEvent, events_to_json
from vcam_me.types import ExpressionState, FaceObservation


class TrackedExpression(Protocol):
    def update(self, obs: FaceObservation) -> None: ...

    def state_at(self, t_ms: int) -> ExpressionState: ...


class IdleLayer(Protocol):
    """The idle animator as the composer uses it (:mod:`vcam_me.expression.idle`)."""

    def sample(self, t_ms: float, face_present: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]: ...


class Trigger(Protocol):
    """Something that starts events as the render clock advances (auto mode, a script).

    A trigger with an ``origin_ms`` attribute (a script) gets the render time of the first
    output frame written there, so its times count from the start of the output."""

    def tick(self, t_ms: float, tracked_au: np.ndarray, *, speech_level: float | None = None) -> Any: ...


class ExpressionComposer:
    """Tracked + idle + injected, behind the mapper's ``update`` / ``state_at`` protocol.

    ``speech_level`` (optional) returns the microphone level in [0, 1] for the triggers' speech
    rule; ``clock`` is the render clock used when a hotkey triggers without a time (the live
    pipeline renders on :func:`vcam_me.clock.now_ms`).
    """

    def __init__(self, tracked: TrackedExpression, engine: MicroEngine | None = None, triggers: Sequence[Trigger] = (),
                 idle: IdleLayer | None = None, *, speech_level: Callable[[], float | None] | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        if triggers and engine is None:
            raise ValueError("triggers need an engine")
        self.tracked = tracked
        self.engine = engine
        self.triggers = list(triggers)
        self.idle = idle
        self.speech_level = speech_level
        self.clock = clock
        self._lock = threading.Lock()  # the render thread's own state (origin, last time)
        #: Render time of the first output frame (the output timeline's 0), once rendered.
        self.origin_ms: float | None = None
        self.last_ms: float | None = None
        # The last state that showed the tracked face: the hand-over to idle fades from it.
        self._last_live: ExpressionState | None = None

    # -- camera clock ----------------------------------------------------------------------------
    def update(self, obs: FaceObservation) -> None:
        self.tracked.update(obs)

    # -- render clock ----------------------------------------------------------------------------
    def state_at(self, t_ms: int) -> ExpressionState:
        live = self.tracked.state_at(t_ms)
        with self._lock:
            if self.origin_ms is None:
                self.origin_ms = float(t_ms)
                for trigger in self.triggers:
                    if hasattr(trigger, "origin_ms"):
                        trigger.origin_ms = float(t_ms)
            self.last_ms = float(t_ms)
        tracked_au = np.asarray(live.au, np.float32)
        gaze, pose = live.gaze, live.head_pose
        idle_part = np.zeros_like(tracked_au)
        if self.idle is not None:
            # While the face is lost the mapper decays its last expression toward neutral on
            # its own; under the idle hand-over that fades the face twice over, and the head
            # pose stepped by 1.2 degrees per 30 fps frame where the face left (bundled clip,
            # tests/test_tracking_faults_end_to_end.py). The hand-over alone fades from the
            # last tracked face along its smoothstep.
            if live.face_present:
                self._last_live = live
            elif self._last_live is not None:
                held = self._last_live
                tracked_au, gaze, pose = np.asarray(held.au, np.float32), held.gaze, held.head_pose
            idle_au, idle_gaze, idle_pose, weight = self.idle.sample(t_ms, live.face_present)
            w = float(min(max(weight, 0.0), 1.0))
            tracked_au = (1.0 - w) * tracked_au
            idle_part = (w * np.asarray(idle_au, np.float32)).astype(np.float32)
            gaze = ((1.0 - w) * gaze + w * np.asarray(idle_gaze, np.float32)).astype(np.float32)
            pose = ((1.0 - w) * pose + w * np.asarray(idle_pose, np.float32)).astype(np.float32)
        base = np.clip(tracked_au + idle_part, 0.0, 1.0)
        injected = np.zeros_like(base)
        if self.engine is not None:
            speech = self.speech_level() if self.speech_level is not None else None
            for trigger in self.triggers:
                trigger.tick(t_ms, base, speech_level=speech)
            injected = self.engine.injected(t_ms, base)
        au = fill_derived((base + injected).astype(np.float32))
        return ExpressionState(
            timestamp_ms=t_ms,
            au=au,
            gaze=np.asarray(gaze, np.float32),
            head_pose=np.asarray(pose, np.float32),
            source_timestamp_ms=live.source_timestamp_ms,
            face_present=live.face_present,
            components={"tracked": tracked_au.astype(np.float32), "injected": injected, "idle": idle_part},
            baseline=live.baseline,
        )

    # -- hotkeys and the API -------------------------------------------------------------------------
    def _engine(self) -> MicroEngine:
        if self.engine is None:
            raise RuntimeError("this expression stage has no micro-expression engine")
        return self.engine

    def trigger(self, type_name: str, t_ms: float | None = None, **kwargs) -> MicroEvent | None:
        """Start a micro-expression now (or at ``t_ms``); see :meth:`MicroEngine.trigger`."""
        return self._engine().trigger(type_name, self.clock() if t_ms is None else t_ms, **kwargs)

    def hold(self, type_name: str, t_ms: float | None = None, source: str = "hotkey", **kwargs) -> MicroEvent | None:
        return self._engine().hold(type_name, self.clock() if t_ms is None else t_ms, source, **kwargs)

    def release(self, type_name: str, t_ms: float | None = None) -> MicroEvent | None:
        return self._engine().release(type_name, self.clock() if t_ms is None else t_ms)

    @property
    def events(self) -> tuple[MicroEvent, ...]:
        return () if self.engine is None else self.engine.events

    def finish(self) -> None:
        """End of the output: release held expressions at the last rendered instant, so the log
        has no open event."""
        if self.engine is not None and self.last_ms is not None:
            self.engine.release_all(self.last_ms)

    def write_events(self, path: Path | str, *, force: bool = False, **metadata) -> Path:
        """The event log on the output timeline (0 = the first rendered frame)."""
        self.finish()
        seed = None if self.engine is None else self.engine.seed
        return events_to_json(self.events, path, force=force, origin_ms=self.origin_ms or 0.0, seed=seed, **metadata)
