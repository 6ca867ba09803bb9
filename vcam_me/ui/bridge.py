"""What the pipeline tells the desktop app, handed from its threads to the GUI thread.

The live session (:class:`vcam_me.app.LiveSession`) calls a listener from its own threads:
the render loop once per output frame, worker threads with status changes, notices and
errors. :class:`PipelineBridge` is that listener. It knows nothing of Qt: it keeps a small
mailbox, and when the mailbox goes from empty to not empty it calls ``wake()`` once. The
Qt side (:mod:`vcam_me.ui.qt_bridge`) makes ``wake`` post a queued signal, and on the GUI
thread takes the mailbox's contents and re-emits them as Qt signals.

Frames are *latest wins*: a GUI that is busy for a moment gets the newest frame when it
comes back, never a queue of 60 stale ones, so the render loop can never flood the GUI's
event queue and the GUI can never slow the render loop (it only takes a lock briefly).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vcam_me.clock import now_ms
from vcam_me.types import ExpressionState, RenderedFrame


class StreamStatus(enum.Enum):
    """What the tray icon shows."""

    STOPPED = "stopped"
    STARTING = "starting"
    LIVE = "live"  # streaming, the face is tracked
    IDLE = "idle"  # streaming, no face: the avatar idles
    PAUSED = "paused"  # streaming, tracking paused by the user: the avatar idles
    #: streaming, but the virtual camera vanished or is busy: the call sees nothing while
    #: it is reopened (preview and recording go on). Outranks live/idle/paused: it is what
    #: the user must know first.
    NO_VIRTUAL_CAMERA = "no virtual camera"
    ERROR = "error"


#: The statuses of a running stream (frames flow; the tray shows which of these it is).
_STREAMING = (StreamStatus.LIVE, StreamStatus.IDLE, StreamStatus.PAUSED, StreamStatus.NO_VIRTUAL_CAMERA)


@dataclass(frozen=True)
class FrameReport:
    """One output frame as the call sees it, with the live figures the preview overlays.

    Attributes:
        frame: the labelled output frame, ``(H, W, 3) uint8 RGB``.
        state: the expression it shows (``state.au``: AU intensities in [0, 1]).
        fps: output frames per second over about the last half second (``None`` at first).
        latency_ms: age of the camera frame it shows, when handed to the outputs (``None``
            while no face is tracked).
        cpu_cores: CPU time of this whole process per second of wall time, over about the
            last second (1.0 = one core busy); ``None`` at first.
    """

    frame: RenderedFrame
    state: ExpressionState
    fps: float | None
    latency_ms: float | None
    cpu_cores: float | None


@dataclass
class Delivery:
    """What :meth:`PipelineBridge.take` hands the GUI thread: the newest frame since the last
    take, status changes in order, and every notice and error."""

    frame: FrameReport | None = None
    statuses: list[StreamStatus] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.frame or self.statuses or self.notices or self.errors)


class _RateMeter:
    """Frames per second and CPU cores over a sliding window, updated from the render thread."""

    def __init__(self, window_s: float = 0.5) -> None:
        self.window_s = window_s
        self._t0 = time.monotonic()
        self._cpu0 = time.process_time()
        self._frames = 0
        self.fps: float | None = None
        self.cpu_cores: float | None = None

    def tick(self) -> None:
        self._frames += 1
        now = time.monotonic()
        elapsed = now - self._t0
        if elapsed >= self.window_s:
            cpu = time.process_time()
            self.fps = self._frames / elapsed
            self.cpu_cores = (cpu - self._cpu0) / elapsed
            self._t0, self._cpu0, self._frames = now, cpu, 0


class PipelineBridge:
    """The live session's listener; thread-safe. ``wake`` is called (from whichever thread
    delivered) when the mailbox stops being empty; the GUI then calls :meth:`take`."""

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._mail = Delivery()
        self._meter = _RateMeter()
        self._stream_status = StreamStatus.STOPPED
        self._last_face: bool | None = None
        self._output_lost = False
        self._woken = False
        #: Set by the controller: while True a streaming session reads as PAUSED.
        self.paused = False

    @property
    def stream_status(self) -> StreamStatus:
        """The status as of the last delivery (GUI thread: read after :meth:`take`)."""
        return self._stream_status

    # -- listener side: any thread ---------------------------------------------------------
    def frame(self, frame: RenderedFrame, state: ExpressionState, stats=None) -> None:
        self._meter.tick()
        latency = None
        if state.face_present and state.source_timestamp_ms is not None:
            latency = float(now_ms() - state.source_timestamp_ms)
        report = FrameReport(frame, state, self._meter.fps, latency, self._meter.cpu_cores)
        with self._lock:
            self._mail.frame = report
            if self._stream_status in (StreamStatus.STARTING, *_STREAMING):
                self._set_status_locked(self._streaming_status(state.face_present))
        self._post()

    def status(self, name: str) -> None:
        """``name``: "starting", "streaming", "stopped", "error", or "output_lost" /
        "output_back" when the virtual camera vanishes and returns (also while starting)."""
        mapping = {"starting": StreamStatus.STARTING, "stopped": StreamStatus.STOPPED, "error": StreamStatus.ERROR}
        with self._lock:
            if name == "streaming":
                self._set_status_locked(self._streaming_status(False))
            elif name in ("output_lost", "output_back"):
                self._output_lost = name == "output_lost"
                if self._stream_status in _STREAMING:
                    self._set_status_locked(self._streaming_status(bool(self._last_face)))
            elif name in mapping:
                self._output_lost = False  # a new session opens its own virtual camera
                self._set_status_locked(mapping[name])
            else:
                raise ValueError(f"unknown session status {name!r}")
        self._post()

    def notice(self, title: str, text: str) -> None:
        with self._lock:
            self._mail.notices.append((title, text))
        self._post()

    def error(self, text: str) -> None:
        with self._lock:
            self._mail.errors.append(text)
        self._post()

    def refresh(self) -> None:
        """Re-derive the status after :attr:`paused` changed (GUI thread)."""
        with self._lock:
            if self._stream_status in _STREAMING:
                self._set_status_locked(self._streaming_status(bool(self._last_face)))
        self._post()

    # -- GUI side ----------------------------------------------------------------------------
    def take(self) -> Delivery:
        """Everything delivered since the last call (the newest frame only)."""
        with self._lock:
            mail, self._mail = self._mail, Delivery()
            self._woken = False
        return mail

    # -- internals ---------------------------------------------------------------------------
    def _streaming_status(self, face_present: bool) -> StreamStatus:
        self._last_face = face_present
        if self._output_lost:
            return StreamStatus.NO_VIRTUAL_CAMERA
        if self.paused:
            return StreamStatus.PAUSED
        return StreamStatus.LIVE if face_present else StreamStatus.IDLE

    def _set_status_locked(self, status: StreamStatus) -> None:
        if status != self._stream_status:
            self._stream_status = status
            self._mail.statuses.append(status)

    def _post(self) -> None:
        # Wake the GUI only when it has nothing pending already: one wake per take.
        with self._lock:
            if not self._mail or self._woken:
                return
            self._woken = True
        if self._wake is not None:
            self._wake()
