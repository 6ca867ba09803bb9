"""Scripted sequences: micro-expressions at given times, from a JSON file or from Python.

File format: a JSON list of entries, in any order::

    [
      {"t_ms": 1200, "type": "suppressed_smile", "side": "left", "peak": 0.4},
      {"t_ms": 3000, "type": "brow_lowerer"},
      {"t_ms": 5000, "type": "brow_raise", "hold_ms": 1500}
    ]

* ``t_ms`` (required): when the event starts, in ms on the output timeline (0 = the first
  output frame; for ``vcam-me render`` the rendered video's time, for ``vcam-me run`` the time
  since streaming began);
* ``type`` (required): a type of the micro-expression library;
* ``side`` (optional): ``"left"``, ``"right"`` or ``"both"``; drawn from the type's laterality
  when absent;
* ``peak`` (optional): intensity at the apex as a fraction of the user's calibrated range, in
  (0, 1]; drawn from the configured intensity when absent;
* ``hold_ms`` (optional): makes it a held (macro) expression, released ``hold_ms`` after it
  starts.

An entry that would conflict with an event still running is skipped and reported
(:attr:`ScriptedTrigger.skipped`); the log shows what was actually injected.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcam_me.errors import MicroExpressionError, shown
from vcam_me.expression.micro.engine import MicroEngine
from vcam_me.expression.micro.events import MicroEvent
from vcam_me.expression.micro.library import SIDES, MicroLibrary, read_user_text

log = logging.getLogger(__name__)

_KEYS = {"t_ms", "type", "side", "peak", "hold_ms"}


@dataclass(frozen=True)
class ScriptEntry:
    """One scripted event (see the module docstring for the fields)."""

    t_ms: float
    type: str
    side: str | None = None
    peak: float | None = None
    hold_ms: float | None = None


def parse_script(data: Any, library: MicroLibrary, where: str = "script") -> list[ScriptEntry]:
    """Validate parsed JSON; returns the entries sorted by time. Errors name ``where`` and the entry."""
    if not isinstance(data, list):
        raise MicroExpressionError(f"{where}: expected a JSON list of events like "
                                   f'[{{"t_ms": 1200, "type": "suppressed_smile"}}], got {type(data).__name__}')
    entries = []
    for i, item in enumerate(data):
        def fail(reason: str, number: int = i + 1):
            raise MicroExpressionError(f"{where}, event {number}: {reason}")

        if not isinstance(item, dict):
            fail(f"expected an object with t_ms and type, got {shown(item)}")
        unknown = set(item) - _KEYS
        if unknown:
            fail(f"unknown key {shown(min(unknown))} (allowed: {', '.join(sorted(_KEYS))})")
        for key in ("t_ms", "type"):
            if key not in item:
                fail(f"missing {key}")
        t = item["t_ms"]
        if not _number(t) or t < 0:
            fail(f"t_ms = {shown(t)}: expected a time in ms ≥ 0")
        name = item["type"]
        if not isinstance(name, str) or name not in library:
            fail(f"unknown type {shown(name)} (known: {', '.join(library.names)})")
        side = item.get("side")
        if side is not None:
            if side not in SIDES:
                fail(f"side = {shown(side)}: allowed left, right, both")
            if side != "both" and not library[name].has_sided_au:
                fail(f"side = {shown(side)}: {name} has no AU with sides, so it is always drawn on both")
        peak = item.get("peak")
        if peak is not None and (not _number(peak) or not 0 < peak <= 1):
            fail(f"peak = {shown(peak)}: expected a fraction of the calibrated range in (0, 1]")
        hold = item.get("hold_ms")
        if hold is not None and (not _number(hold) or not 0 < hold <= 60_000):
            fail(f"hold_ms = {shown(hold)}: expected ms in (0, 60000]")
        entries.append(ScriptEntry(float(t), name, side, None if peak is None else float(peak),
                                   None if hold is None else float(hold)))
    return sorted(entries, key=lambda e: e.t_ms)


def load_script(path: Path | str, library: MicroLibrary) -> list[ScriptEntry]:
    """Read and validate a script file; a clear one-line error for a missing or malformed one."""
    path = Path(path).expanduser()
    text = read_user_text(path, "micro-expression script")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise MicroExpressionError(f"{path}, line {err.lineno}, column {err.colno}: not valid JSON: {err.msg}") from None
    except ValueError as err:  # int()'s own limit on digits, which json lets through
        raise MicroExpressionError(f"{path}: not valid JSON: {str(err).splitlines()[0][:200]}") from None
    except RecursionError:
        raise MicroExpressionError(f"{path}: not valid JSON: nested too deeply") from None
    return parse_script(data, library, where=str(path))


class ScriptedTrigger:
    """Plays script entries through ``engine`` as the render clock reaches them.

    Each entry starts at exactly its ``t_ms`` (the envelope is zero there, so an entry reached
    a fraction of a frame late loses nothing). ``origin_ms`` is the render-clock time of the
    output's first frame: 0 offline; set it (or let the composer set it) when streaming live.
    """

    def __init__(self, engine: MicroEngine, entries: Sequence[ScriptEntry], *, origin_ms: float = 0.0) -> None:
        self.engine = engine
        self.entries = sorted(entries, key=lambda e: e.t_ms)
        self.origin_ms = float(origin_ms)
        self._next = 0
        self._releases: list[tuple[float, str]] = []
        #: Entries not injected, with the reason.
        self.skipped: list[tuple[ScriptEntry, str]] = []

    def tick(self, t_ms: float, tracked_au: np.ndarray | None = None, *, speech_level: float | None = None) -> list[MicroEvent]:
        """Start every entry due by render time ``t_ms``; returns the events started."""
        started = []
        for due, name in [r for r in self._releases if r[0] <= t_ms]:
            self.engine.release(name, due)
            self._releases.remove((due, name))
        while self._next < len(self.entries) and self.entries[self._next].t_ms + self.origin_ms <= t_ms:
            entry = self.entries[self._next]
            self._next += 1
            start = entry.t_ms + self.origin_ms
            if entry.hold_ms is not None:
                event = self.engine.hold(entry.type, start, "script", side=entry.side, peak=entry.peak)
                if event is not None:
                    self._releases.append((start + entry.hold_ms, entry.type))
            else:
                event = self.engine.trigger(entry.type, start, side=entry.side, peak=entry.peak, source="script")
            if event is None:
                reason = "conflicts with an event still running"
                self.skipped.append((entry, reason))
                log.warning("scripted %s at %.0f ms skipped: %s", entry.type, entry.t_ms, reason)
            else:
                started.append(event)
        return started

    @property
    def finished(self) -> bool:
        return self._next >= len(self.entries) and not self._releases


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
