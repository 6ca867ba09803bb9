"""The micro-expression library: types of micro-expression as validated data.

``config/micro_expressions.toml`` holds the bundled types (its header documents the schema);
users add or replace types in their own file. :meth:`MicroLibrary.load` checks every entry and
refuses a malformed one with its file, line and reason.

Timing: each type gives onset (onset → apex), offset (apex → offset) and total durations as a
median and interquartile range. An event's onset and offset are drawn from two-piece normal
distributions that reproduce each median and quartile exactly, joined by a Gaussian copula
whose correlation is fitted on load so that onset + offset follows the type's total as closely
as such a copula can (the databases give the three marginals, not their joint). A total above
the 500 ms definition is shrunk to 500 ms, onset and offset in proportion.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vcam_me.config import PROJECT_ROOT
from vcam_me.errors import MicroExpressionError, shown
from vcam_me.types import AU_INDEX, DERIVED_AU_CHANNELS

DEFAULT_LIBRARY_PATH = PROJECT_ROOT / "config" / "micro_expressions.toml"
#: The working definition of a micro-expression: onset to offset within 500 ms (§0).
TOTAL_CAP_MS = 500.0
#: No phase is shorter than this (two frames at 60 fps), so every rise and fall is drawn.
MIN_PHASE_MS = 30.0
SIDES = ("left", "right", "both")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_FACS_LETTERS = "ABCDE"
# Standard-normal quartile: z at the 75th percentile.
_Z_Q3 = 0.6744897501960817


# -- AU names ----------------------------------------------------------------------------------
def au_number(channel: str) -> int | None:
    """FACS number of a channel or AU name ("AU12_L" → 12, "AU17_lower" → 17); None for others."""
    m = re.match(r"AU(\d+)", channel)
    return int(m.group(1)) if m else None


def is_sided(name: str) -> bool:
    """Whether an AU written once ("AU12") has left and right channels."""
    return f"{name}_L" in AU_INDEX and f"{name}_R" in AU_INDEX


def check_au_name(name: str) -> str | None:
    """Why ``name`` cannot be injected, or None when it can."""
    if name in DERIVED_AU_CHANNELS:
        return f"{name} is derived from the other channels and cannot be injected (lips part through AU26, AU10 or AU16)"
    if name in AU_INDEX:
        if name.endswith(("_L", "_R")):
            return f"{name}: write the AU once ({name[:-2]}); the event's side chooses the channels"
        return None
    if is_sided(name):
        return None
    return f"unknown AU {shown(name)} (use a channel of AU_CHANNELS without its side, e.g. AU12, AU1, AU17_lower)"


def expand_aus(aus: Mapping[str, float], side: str) -> dict[str, float]:
    """AUs written once → channels on ``side``: {"AU12": 1.0}, "left" → {"AU12_L": 1.0}."""
    out: dict[str, float] = {}
    for name, rel in aus.items():
        if is_sided(name):
            channels = {"left": (f"{name}_L",), "right": (f"{name}_R",), "both": (f"{name}_L", f"{name}_R")}[side]
        else:
            channels = (name,)
        for ch in channels:
            out[ch] = max(out.get(ch, 0.0), float(rel))
    return out


# -- durations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Duration:
    """A duration distribution given by its median and quartiles (ms)."""

    median: float
    q1: float
    q3: float

    def from_normal_score(self, z: np.ndarray | float) -> np.ndarray:
        """The value at standard-normal score ``z``: a two-piece normal, each half scaled to
        put the quartiles where the data has them (so median, Q1 and Q3 are exact)."""
        z = np.asarray(z, np.float64)
        low = (self.median - self.q1) / _Z_Q3
        high = (self.q3 - self.median) / _Z_Q3
        return self.median + np.where(z < 0, low, high) * z

    def at(self, z: float) -> float:
        """:meth:`from_normal_score` for one score, with plain floats (the engine's per-event path)."""
        return self.median + ((self.median - self.q1) if z < 0 else (self.q3 - self.median)) / _Z_Q3 * z


# -- one type ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AUPattern:
    """One AU pattern with its probability: ``aus`` maps AU names (written once) to relative peaks."""

    p: float
    aus: Mapping[str, float]


@dataclass(frozen=True)
class MicroType:
    """One type of micro-expression. AU names are written once (see :func:`expand_aus`)."""

    name: str
    description: str
    source: str
    variants: tuple[AUPattern, ...]
    optional: tuple[AUPattern, ...]
    laterality: Mapping[str, float]
    onset: Duration
    offset: Duration
    total: Duration
    weight: float = 1.0
    clips: int | None = None
    note: str = ""
    #: Correlation of onset and offset (normal scores), fitted on load to the total.
    onset_offset_rho: float = 0.0
    file: str = ""
    line: int = 0

    @property
    def au_names(self) -> frozenset[str]:
        """Every AU this type can move (all variants and optional groups)."""
        return frozenset(a for pat in self.variants + self.optional for a in pat.aus)

    @property
    def au_numbers(self) -> frozenset[int]:
        return frozenset(n for a in self.au_names if (n := au_number(a)) is not None)

    @property
    def has_sided_au(self) -> bool:
        return any(is_sided(a) for a in self.au_names)

    def sample_phases(self, rng: np.random.Generator) -> tuple[float, float]:
        """Onset and offset durations (ms) of one event."""
        z_onset, z_free = rng.standard_normal(2).tolist()
        rho = self.onset_offset_rho
        z_offset = rho * z_onset + math.sqrt(max(0.0, 1.0 - rho * rho)) * z_free
        onset = max(self.onset.at(z_onset), MIN_PHASE_MS)
        offset = max(self.offset.at(z_offset), MIN_PHASE_MS)
        shrink = min(1.0, TOTAL_CAP_MS / (onset + offset))
        return onset * shrink, offset * shrink

    def phases_from_scores(self, z_onset: np.ndarray, z_free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_phases` for arrays of normal scores (used to fit the correlation)."""
        rho = np.asarray(self.onset_offset_rho, np.float64)
        z_offset = rho * z_onset + np.sqrt(np.maximum(0.0, 1.0 - rho * rho)) * z_free
        onset = np.maximum(self.onset.from_normal_score(z_onset), MIN_PHASE_MS)
        offset = np.maximum(self.offset.from_normal_score(z_offset), MIN_PHASE_MS)
        shrink = np.minimum(1.0, TOTAL_CAP_MS / (onset + offset))
        return onset * shrink, offset * shrink


def fit_onset_offset_rho(onset: Duration, offset: Duration, total: Duration) -> float:
    """The copula correlation whose onset + offset best matches ``total``'s median and quartiles
    (least squares). Deterministic: fixed normal scores, correlations on a 0.05 grid."""
    probe = MicroType("probe", "", "", (), (), {}, onset, offset, total)
    z = np.random.default_rng(20261124).standard_normal((2, 1, 1500))
    rhos = np.round(np.arange(-0.95, 0.951, 0.05), 2)[:, None]
    o, f = _with_rho(probe, rhos).phases_from_scores(z[0], z[1])
    quartiles = np.percentile(o + f, [25, 50, 75], axis=1).T
    err = np.sum((quartiles - np.array([total.q1, total.median, total.q3])) ** 2, axis=1)
    return float(rhos[int(np.argmin(err)), 0])


def _with_rho(t: MicroType, rho) -> MicroType:
    return replace(t, onset_offset_rho=rho)


# -- the library ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeldTiming:
    """Rise and fall of a held (macro) expression, in ms."""

    onset_ms: float = 465.0
    offset_ms: float = 600.0


@dataclass(frozen=True)
class MicroLibrary:
    """All known types, the intensity letters, held timing and the antagonist pairs."""

    types: Mapping[str, MicroType]
    intensity_letters: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    held: HeldTiming = HeldTiming()
    #: AU numbers that conflict across events, both directions.
    antagonists: frozenset[tuple[int, int]] = frozenset()

    @classmethod
    def load(cls, *paths: Path | str) -> MicroLibrary:
        """Read library files in order: later files add types, replace same-named ones and add
        antagonist pairs. With no path, the bundled library."""
        paths = paths or (DEFAULT_LIBRARY_PATH,)
        types: dict[str, MicroType] = {}
        letters: dict[str, tuple[float, float]] = {}
        held = HeldTiming()
        antagonists: set[tuple[int, int]] = set()
        for path in paths:
            doc = _Document.read(Path(path))
            letters.update(doc.intensity_letters())
            held = doc.held(held)
            antagonists |= doc.antagonists()
            for mtype in doc.types():
                types[mtype.name] = mtype
        missing = [c for c in _FACS_LETTERS if c not in letters]
        if missing:
            raise MicroExpressionError(f"{paths[-1]}: [intensity] lacks the letters {', '.join(missing)} "
                                       f"(the bundled library {DEFAULT_LIBRARY_PATH} defines them)")
        if not types:
            raise MicroExpressionError(f"{', '.join(map(str, paths))}: no [type.NAME] tables: nothing to inject")
        return cls(types, letters, held, frozenset(antagonists))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.types)

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def __getitem__(self, name: str) -> MicroType:
        try:
            return self.types[name]
        except KeyError:
            raise MicroExpressionError(f"unknown micro-expression type {shown(name)} (known: {', '.join(self.types)})") from None

    def intensity_range(self, spec: str) -> tuple[float, float]:
        """A FACS letter or range ("B", "A-B") → fractions of the calibrated range."""
        lo, hi = parse_intensity(spec)
        return self.intensity_letters[lo][0], self.intensity_letters[hi][1]

    def conflicting(self, a: frozenset[int], b: frozenset[int]) -> bool:
        """Whether events moving AU numbers ``a`` and ``b`` conflict: a shared AU, or an antagonist pair."""
        return bool(self.blocked_by(a) & b)

    def blocked_by(self, numbers: frozenset[int]) -> frozenset[int]:
        """AU numbers another event may not move while one moving ``numbers`` runs: the same
        AUs and their antagonists."""
        return frozenset(numbers) | {y for x, y in self.antagonists if x in numbers}


def parse_intensity(spec: str) -> tuple[str, str]:
    """"A-B" → ("A", "B"); "C" → ("C", "C"). Raises ValueError with the reason."""
    m = re.fullmatch(r"\s*([A-E])\s*(?:[-–]\s*([A-E])\s*)?", str(spec))
    if not m:
        raise ValueError(f"intensity {shown(spec)}: expected a FACS letter A..E or a range like A-B")
    lo, hi = m.group(1), m.group(2) or m.group(1)
    if _FACS_LETTERS.index(lo) > _FACS_LETTERS.index(hi):
        raise ValueError(f"intensity {shown(spec)}: the range must go from the weaker letter to the stronger")
    return lo, hi


# -- reading and validating one file ---------------------------------------------------------------
_TYPE_KEYS = {"description", "source", "note", "clips", "weight", "aus", "variants", "optional", "laterality",
              "onset_ms", "offset_ms", "total_ms"}
_REQUIRED = ("description", "source", "laterality", "onset_ms", "offset_ms", "total_ms")
_TOP_KEYS = {"intensity", "held", "conflicts", "type"}


def read_user_text(path: Path, what: str) -> str:
    """The text of a file the user names; a missing or unreadable one is a one-line error."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MicroExpressionError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MicroExpressionError(f"{what} {path} cannot be read: {err}") from None


class _Document:
    """One parsed file, with its text kept to point errors at lines (tomllib gives none)."""

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path, self.text, self.data = path, text, data
        self.lines = text.splitlines()

    @classmethod
    def read(cls, path: Path) -> _Document:
        text = read_user_text(path, "micro-expression library")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise MicroExpressionError(f"{path}: not valid TOML: {err}") from None
        except ValueError as err:  # tomllib lets int()'s own errors through (e.g. a 5000-digit number)
            raise MicroExpressionError(f"{path}: not valid TOML: {str(err).splitlines()[0][:200]}") from None
        except RecursionError:
            raise MicroExpressionError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
        doc = cls(path, text, data)
        for key in data:
            if key not in _TOP_KEYS:
                doc.fail(doc.header_line(key) or 1, f"unknown table [{key}] (allowed: {', '.join(sorted(_TOP_KEYS))})")
        return doc

    # -- where things are -------------------------------------------------------------------
    def header_line(self, table: str) -> int | None:
        """1-based line of the ``[table]`` header (dotted, with or without quotes)."""
        parts = table.split(".")
        pattern = r"\s*\.\s*".join(rf'(?:{re.escape(p)}|"{re.escape(p)}")' for p in parts)
        rx = re.compile(rf"^\s*\[\s*{pattern}\s*\]")
        for i, line in enumerate(self.lines, 1):
            if rx.match(line):
                return i
        return None

    def key_line(self, table: str, key: str) -> int:
        """Line of ``key = …`` inside ``[table]``, else the header's line."""
        start = self.header_line(table)
        if start is None:
            return 1
        rx = re.compile(rf'^\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*=')
        for i in range(start, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                break
            if rx.match(self.lines[i]):
                return i + 1
        return start

    def fail(self, line: int, reason: str):
        if len(reason) > 400:  # a name from the file can be any length: keep the message one readable line
            reason = f"{reason[:380]}… ({len(reason)} chars)"
        raise MicroExpressionError(f"{self.path}, line {line}: {reason}")

    # -- sections ---------------------------------------------------------------------------
    def intensity_letters(self) -> dict[str, tuple[float, float]]:
        table = self.data.get("intensity", {})
        if not isinstance(table, dict):
            self.fail(1, "[intensity] must be a table of FACS letters")
        out = {}
        for letter, value in table.items():
            line = self.key_line("intensity", letter)
            if letter not in _FACS_LETTERS:
                self.fail(line, f"intensity letter {shown(letter)}: FACS letters are A..E")
            if (not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) for v in value)
                    or not 0 < value[0] < value[1] <= 1):
                self.fail(line, f"intensity {letter} = {shown(value)}: expected [low, high] with 0 < low < high ≤ 1")
            out[letter] = (float(value[0]), float(value[1]))
        return out

    def held(self, current: HeldTiming) -> HeldTiming:
        table = self.data.get("held")
        if table is None:
            return current
        if not isinstance(table, dict):
            self.fail(self.header_line("held") or 1, "[held] must be a table: onset_ms = ms, offset_ms = ms")
        values = {}
        for key, value in table.items():
            line = self.key_line("held", key)
            if key not in ("onset_ms", "offset_ms"):
                self.fail(line, f"[held] {key}: unknown key (allowed: onset_ms, offset_ms)")
            if not _is_number(value) or not 50 <= value <= 5000:
                self.fail(line, f"[held] {key} = {shown(value)}: expected a number of ms in 50..5000")
            values[key] = float(value)
        return replace(current, **values)

    def antagonists(self) -> set[tuple[int, int]]:
        table = self.data.get("conflicts", {})
        if not isinstance(table, dict):
            self.fail(self.header_line("conflicts") or 1, "[conflicts] must be a table: antagonists = [[AU, AU], ...]")
        out: set[tuple[int, int]] = set()
        for key, value in table.items():
            line = self.key_line("conflicts", key)
            if key != "antagonists":
                self.fail(line, f"[conflicts] {key}: unknown key (allowed: antagonists)")
            if not isinstance(value, list):
                self.fail(line, "antagonists: expected a list of [AU, AU] pairs")
            for pair in value:
                if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(a, str) for a in pair)
                        or None in (au_number(pair[0]), au_number(pair[1]))):
                    self.fail(line, f"antagonists: {shown(pair)} is not a pair of AU names like [\"AU12\", \"AU15\"]")
                a, b = au_number(pair[0]), au_number(pair[1])
                out |= {(a, b), (b, a)}
        return out

    def types(self) -> list[MicroType]:
        table = self.data.get("type", {})
        if not isinstance(table, dict):
            self.fail(1, "type must be tables [type.NAME]")
        return [self._type(name, entry) for name, entry in table.items()]

    # -- one [type.NAME] ----------------------------------------------------------------------
    def _type(self, name: str, entry: Any) -> MicroType:
        table = f"type.{name}"
        header = self.header_line(table) or 1

        def fail(key: str | None, reason: str):
            self.fail(self.key_line(table, key) if key else header, f"[{table}] {reason}")

        if not _NAME.fullmatch(name):
            fail(None, "type names use lower-case letters, digits and '_' and start with a letter")
        if not isinstance(entry, dict):
            fail(None, "must be a table")
        for key in entry:
            if key not in _TYPE_KEYS:
                fail(key, f"unknown key {shown(key)} (allowed: {', '.join(sorted(_TYPE_KEYS))})")
        for key in _REQUIRED:
            if key not in entry:
                fail(None, f"missing {key}")
        for key in ("description", "source", "note"):
            if key in entry and not isinstance(entry[key], str):
                fail(key, f"{key} must be text")
        if ("aus" in entry) == ("variants" in entry):
            fail(None, "give either aus = { ... } (one pattern) or variants = [ ... ], not both or neither")
        if "aus" in entry:
            variants = (AUPattern(1.0, self._aus(entry["aus"], lambda r: fail("aus", r))),)
        else:
            variants = self._patterns(entry["variants"], lambda r: fail("variants", r), "variants")
            total_p = sum(v.p for v in variants)
            if abs(total_p - 1.0) > 0.01:
                fail("variants", f"variant probabilities sum to {total_p:.3f}, not 1")
        optional = self._patterns(entry.get("optional", []), lambda r: fail("optional", r), "optional")
        laterality = entry["laterality"]
        if not isinstance(laterality, dict) or not laterality:
            fail("laterality", "laterality must be { left = p, right = p, both = p }")
        for side, p in laterality.items():
            if side not in SIDES:
                fail("laterality", f"laterality side {shown(side)}: allowed left, right, both")
            if not _is_number(p) or p < 0:
                fail("laterality", f"laterality {side} = {shown(p)}: expected a probability ≥ 0")
        if abs(sum(laterality.values()) - 1.0) > 0.01:
            fail("laterality", f"laterality probabilities sum to {sum(laterality.values()):.3f}, not 1")
        lat = {s: float(laterality.get(s, 0.0)) for s in SIDES}
        durations = {}
        for key in ("onset_ms", "offset_ms", "total_ms"):
            durations[key] = self._duration(entry[key], lambda r, k=key: fail(k, r), key)
        if durations["total_ms"].q3 > TOTAL_CAP_MS:
            fail("total_ms", f"total_ms q3 = {durations['total_ms'].q3:g}: a micro-expression lasts at most "
                             f"{TOTAL_CAP_MS:g} ms (use a held expression for longer)")
        weight = entry.get("weight", 1.0)
        if not _is_number(weight) or weight < 0:
            fail("weight", f"weight = {shown(weight)}: expected a number ≥ 0")
        clips = entry.get("clips")
        if clips is not None and (not isinstance(clips, int) or isinstance(clips, bool) or clips < 1):
            fail("clips", f"clips = {shown(clips)}: expected a whole number ≥ 1")
        mtype = MicroType(
            name=name, description=entry["description"], source=entry["source"], variants=variants,
            optional=optional, laterality=lat, onset=durations["onset_ms"], offset=durations["offset_ms"],
            total=durations["total_ms"], weight=float(weight), clips=clips, note=entry.get("note", ""),
            file=str(self.path), line=header,
        )
        if not mtype.has_sided_au and (lat["left"] > 0 or lat["right"] > 0):
            fail("laterality", "none of its AUs has sides, so it can only be drawn on both sides (laterality = { both = 1.0 })")
        rho = fit_onset_offset_rho(mtype.onset, mtype.offset, mtype.total)
        return _with_rho(mtype, rho)

    def _aus(self, aus: Any, fail) -> dict[str, float]:
        if not isinstance(aus, dict) or not aus:
            fail("aus must be { AU = relative peak, ... } with at least one AU")
        for au, rel in aus.items():
            why = check_au_name(au)
            if why:
                fail(why)
            if not _is_number(rel) or not 0 < rel <= 1:
                fail(f"{au} = {shown(rel)}: a relative peak is in (0, 1]")
        return {au: float(rel) for au, rel in aus.items()}

    def _patterns(self, items: Any, fail, key: str) -> tuple[AUPattern, ...]:
        if not isinstance(items, list):
            fail(f"{key} must be a list of {{ p = probability, aus = {{ ... }} }}")
        out = []
        for item in items:
            if not isinstance(item, dict) or set(item) != {"p", "aus"}:
                fail(f"each of {key} is {{ p = probability, aus = {{ ... }} }}, got {shown(item)}")
            if not _is_number(item["p"]) or not 0 <= item["p"] <= 1:
                fail(f"{key}: p = {shown(item['p'])} is not a probability")
            out.append(AUPattern(float(item["p"]), self._aus(item["aus"], fail)))
        return tuple(out)

    def _duration(self, value: Any, fail, key: str) -> Duration:
        if not isinstance(value, dict) or set(value) != {"median", "q1", "q3"}:
            fail(f"{key} must be {{ median = ms, q1 = ms, q3 = ms }}")
        if not all(_is_number(v) for v in value.values()):
            fail(f"{key}: median, q1 and q3 must be numbers of ms")
        d = Duration(float(value["median"]), float(value["q1"]), float(value["q3"]))
        if not 0 < d.q1 <= d.median <= d.q3:
            fail(f"{key}: expected 0 < q1 ≤ median ≤ q3, got q1 = {d.q1:g}, median = {d.median:g}, q3 = {d.q3:g}")
        return d


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
