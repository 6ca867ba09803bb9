"""Injected events and their log.

Every event the engine injects is a :class:`MicroEvent`; the engine keeps them in order and
:func:`events_to_json` writes them for whoever wants to check the output (the proof command
re-tracks a render and scores what it spots against this log).

The log file is one JSON object::

    {"format": "vcam-me micro-expression events", "version": 1,
     "timeline": "...", ...anything the writer adds (mode, seed, fps, video)...,
     "events": [{"type": "suppressed_smile", "aus": {"AU12_L": 1.0}, "side": "left",
                 "peak": 0.21, "start_ms": 1200.0, "apex_ms": 1371.4, "end_ms": 1540.2,
                 "source": "script", "held": false}, ...]}

Times are ms on the output timeline: 0 is the output's first frame, so in a rendered video an
event's ``apex_ms`` is where a verifier re-tracking that video should see its apex.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vcam_me.errors import OutputError
from vcam_me.storage import atomic_write_text

Side = Literal["left", "right", "both"]
Source = Literal["auto", "hotkey", "script", "api", "idle"]
SOURCES = ("auto", "hotkey", "script", "api", "idle")
LOG_FORMAT = "vcam-me micro-expression events"
LOG_TIMELINE = "ms from the output's first frame (in a video: its presentation time)"


@dataclass(frozen=True)
class MicroEvent:
    """One injected expression.

    Attributes:
        type: library type name.
        aus: channel of ``AU_CHANNELS`` (already sided) → relative peak in (0, 1].
        side: ``"left"``, ``"right"`` or ``"both"`` (the subject's sides).
        peak: intensity at the apex, as a fraction of the user's calibrated range of each AU
            (a channel's apex increment is ``peak × relative peak``, before saturation).
        start_ms, apex_ms, end_ms: on the render clock (the output timeline); ``end_ms`` is
            ``None`` while a held expression is still held.
        source: what fired it: ``"auto"``, ``"hotkey"``, ``"script"``, ``"api"`` or ``"idle"`` (the idle animator).
        held: a held (macro) expression: rises to ``peak``, stays while held, falls on release.
    """

    type: str
    aus: Mapping[str, float]
    side: Side
    peak: float
    start_ms: float
    apex_ms: float
    end_ms: float | None
    source: Source = "api"
    held: bool = False

    def to_json(self, origin_ms: float = 0.0) -> dict[str, Any]:
        """A JSON-ready dict; times shifted so that ``origin_ms`` becomes 0."""
        def at(t: float | None) -> float | None:
            return None if t is None else round(t - origin_ms, 1)

        return {
            "type": self.type,
            "aus": {ch: round(float(v), 4) for ch, v in self.aus.items()},
            "side": self.side,
            "peak": round(float(self.peak), 4),
            "start_ms": at(self.start_ms),
            "apex_ms": at(self.apex_ms),
            "end_ms": at(self.end_ms),
            "source": self.source,
            "held": self.held,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MicroEvent:
        end = d.get("end_ms")
        return cls(str(d["type"]), {str(k): float(v) for k, v in d["aus"].items()}, d["side"], float(d["peak"]),
                   float(d["start_ms"]), float(d["apex_ms"]), None if end is None else float(end),
                   d.get("source", "api"), bool(d.get("held", False)))


def events_to_json(events: Iterable[MicroEvent], path: Path | str, *, force: bool = False, origin_ms: float = 0.0,
                   **metadata: Any) -> Path:
    """Write the event log to ``path``; refuses to replace an existing file unless ``force``.

    ``origin_ms`` is the render-clock time of the output's first frame (0 offline); ``metadata``
    (mode, seed, fps, video, …) is stored beside the events. Written whole or not at all.
    """
    path = Path(path).expanduser()
    if path.exists() and not force:
        raise OutputError(f"event log exists: {path} (choose another name, or pass --force to replace it)")
    doc = {"format": LOG_FORMAT, "version": 1, "timeline": LOG_TIMELINE, **metadata,
           "events": [e.to_json(origin_ms) for e in events]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    except OSError as err:
        raise OutputError(f"cannot write the event log {path}: {err.strerror or err}") from None
    return path


def events_from_json(path: Path | str) -> list[MicroEvent]:
    """Read back a log written by :func:`events_to_json`."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return [MicroEvent.from_json(d) for d in doc["events"]]
