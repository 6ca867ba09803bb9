"""Spotting micro-expressions on a re-tracked AU stream, and scoring them against a log.

The proof that an injected micro-expression shows in the output (issue "micro-expressions
that are real") is closed-loop: the rendered video is re-tracked by MediaPipe, its
blendshapes become AU channels by the same crosswalk as live tracking, and this module
finds brief events in those channels *without being told where they are*. The spotted
intervals are then matched with the logged injection intervals by the MEGC rule
(``micro-expressions.md`` §5): a spotted interval is a true positive when its IoU with a
logged one is at least 0.5.

How an event is spotted, per AU channel:

1. light smoothing (3 frames) against tracker jitter;
2. the signal minus its running median over a window more than twice as long as any
   micro-expression (default 1.2 s). What is left are rises shorter than half the window;
   slow expressions, speech and head motion mostly vanish with the median. (A grey opening,
   the usual top-hat, was tried first: a brief *dip* lowers the opening for a whole window
   and makes the flat stretch beside it look raised, which the median does not do);
3. a per-channel threshold ``max(k · σ, floor)``, σ estimated robustly (MAD) from control
   material with nothing injected (the same driver rendered without events): so a channel
   the tracker barely moves, or one that jitters, sets its own floor, as metrics.md asks;
4. each excursion above threshold becomes a channel event: its apex is the residual's
   maximum, its interval where the residual stays above ``edge · peak``;
5. channel events whose apexes lie within ``merge_ms`` (or that overlap by half) are one
   spotted event: its apex is that of its strongest channel (in units of threshold), its
   interval runs from the first of its channels' starts to the last of their ends, its AUs
   are the base names (``AU12`` for ``AU12_L``) of all its channels, and its side is read
   from the strongest bilateral AU: one side's peak below ``side_ratio`` of the other is
   unilateral, each side's peak being the larger of its own channel events and what the
   other side's events saw on it over their interval. (The strongest channel's interval alone was too short: each channel is read
   through its own landmarks and rises out of the tracker's dead zone at its own time: over
   the 104 events spotted in the renders of ``vcam-me eval micro``, it spanned a median 0.69
   of the logged interval, the union 0.82, close to the 0.80 that the 10 % edges of a
   raised-cosine envelope span.)

Blink (AU43) and the derived channels are not spotted rising: blinks are brief by nature and
no micro-expression type is made of them.

A few AUs are also read from the brief *fall* of their antagonist's channel
(:data:`FALLING_READS`). MediaPipe has no dependable channel for them on a face that is only
warped (eyeWide stays near 0, issue 4450; browDown barely moves for a slight frown), but the
same landmark motion lowers the antagonist's score: lids opened wider than at rest lower
eyeBlink below its resting value (AU5), and a lowered brow lowers browOuterUp (AU4). Such a
channel event is named after the AU it reads (``AU5_L``) and keeps the channel it was read from
(``read_from``). A score cannot fall below 0, so how far it falls depends on how high it
rested, which differs between the two sides of a face (the sample avatar's browOuterUp rests
twice as high on the left as on the right): to judge a side, a fall counts as the fraction of
its resting value that it lost (``relative``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

#: Channels never spotted rising (see module docstring).
SKIPPED_CHANNELS = ("AU43_L", "AU43_R", "AU25", "AU27", "MOUTH_L", "MOUTH_R")
#: Channels whose brief fall below their running median reads as another AU rising (see the
#: module docstring): tracked channel → the AU channel it reads.
FALLING_READS = {"AU43_L": "AU5_L", "AU43_R": "AU5_R", "AU2_L": "AU4_L", "AU2_R": "AU4_R"}


def base_au(channel: str) -> str:
    """``AU12_L`` → ``AU12``; ``AU17_lower`` → ``AU17``; ``AU1`` → ``AU1``."""
    return channel.split("_", 1)[0]


def channel_side(channel: str) -> str | None:
    """``"left"``/``"right"`` for sided channels, ``None`` otherwise."""
    if channel.endswith("_L"):
        return "left"
    if channel.endswith("_R"):
        return "right"
    return None


@dataclass(frozen=True)
class SpotterOptions:
    """Knobs of the spotter; the defaults are the ones the committed results use."""

    window_ms: float = 1200.0  # running-median window: over twice any micro-expression (≤ 500 ms)
    k_sigma: float = 5.0  # threshold in robust standard deviations of the control residual
    floor: float = 0.03  # absolute threshold floor (blendshape units)
    edge: float = 0.1  # interval edges where the residual falls below this fraction of the peak
    merge_ms: float = 120.0  # channel apexes this close belong to one event
    side_ratio: float = 0.5  # weaker side below this fraction of the stronger: unilateral
    min_ms: float = 80.0  # shorter excursions are jitter (a micro-expression's visible part lasts longer)
    max_ms: float = 1000.0  # longer ones are not micro-expressions


@dataclass(frozen=True)
class ChannelEvent:
    channel: str
    start_ms: float
    apex_ms: float
    end_ms: float
    peak: float  # residual at the apex (for a fall: how far the read-from channel fell)
    strength: float  # peak / threshold
    read_from: str = ""  # the tracked channel whose fall this AU was read from ("" : its own rise)
    relative: float | None = None  # a fall as a fraction of the read-from channel's resting value
    #: the other side's reading over the same interval (its highest rise, or its largest fall
    #: relative to rest), whether or not it crossed its own threshold; None for unsided channels
    opposite: float | None = None


@dataclass(frozen=True)
class SpottedEvent:
    start_ms: float
    apex_ms: float
    end_ms: float
    aus: tuple[str, ...]  # base AU names, strongest first
    side: str  # "left", "right" or "both"
    strength: float
    channels: tuple[ChannelEvent, ...] = field(default=(), repr=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d["channels"] = [asdict(c) for c in self.channels]
        return d


def _smooth3(x: np.ndarray) -> np.ndarray:
    if len(x) < 3:
        return x.copy()
    padded = np.concatenate([x[:1], x, x[-1:]])
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0


#: Rows of sliding windows held at once by :func:`running_median` (memory: rows × window).
_MEDIAN_CHUNK = 8192


def running_median(x: np.ndarray, half: int) -> np.ndarray:
    """Median of ``x (T,)`` over the ``2·half + 1`` samples centred on each one, the first and
    last sample repeated beyond the ends (``scipy.ndimage.median_filter(x, 2·half + 1,
    mode="nearest")``, which the runtime no longer ships)."""
    x = np.asarray(x)
    padded = np.pad(x, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    out = np.empty(len(x), x.dtype if x.dtype.kind == "f" else np.float64)
    for start in range(0, len(x), _MEDIAN_CHUNK):  # a long clip need not hold all windows at once
        out[start : start + _MEDIAN_CHUNK] = np.median(windows[start : start + _MEDIAN_CHUNK], axis=1)
    return out


def detrend(x: np.ndarray, half: int) -> np.ndarray:
    """``x`` minus its running median over ``2·half + 1`` samples (edges: nearest sample)."""
    if len(x) == 0 or half <= 0:
        return np.zeros_like(x)
    return x - running_median(x, half)


def _held(au: np.ndarray) -> np.ndarray:
    """A copy with NaN rows (no face) held from the last tracked row, then zeros."""
    au = np.asarray(au, np.float64).copy()
    for i in range(1, len(au)):
        if np.isnan(au[i, 0]):
            au[i] = au[i - 1]
    return np.nan_to_num(au)


def residuals(au: np.ndarray, t_ms: np.ndarray, options: SpotterOptions = SpotterOptions()) -> np.ndarray:
    """Detrended residual of every channel: ``(T, C)``. NaN rows (no face) are held from the
    last tracked row so that a dropout is not an event."""
    au = _held(au)
    dt = float(np.median(np.diff(t_ms))) if len(t_ms) > 1 else 1000 / 60
    half = max(1, round(options.window_ms / dt / 2))
    out = np.empty_like(au)
    for c in range(au.shape[1]):
        out[:, c] = detrend(_smooth3(au[:, c]), half)
    return out


def noise_sigma(control_residuals: np.ndarray) -> np.ndarray:
    """Robust per-channel spread of the residual on control material: 1.4826 · MAD."""
    r = np.asarray(control_residuals, np.float64)
    med = np.median(r, axis=0)
    return 1.4826 * np.median(np.abs(r - med), axis=0)


def thresholds(sigma: np.ndarray, options: SpotterOptions = SpotterOptions()) -> np.ndarray:
    return np.maximum(options.k_sigma * np.asarray(sigma, np.float64), options.floor)


def _excursions(r: np.ndarray, t: np.ndarray, threshold: float, options: SpotterOptions):
    """``(start, apex, end)`` sample indices of every excursion of ``r`` above ``threshold``
    that lasts a micro-expression's time (edges at ``options.edge`` of its peak)."""
    above = r > threshold
    if not above.any():
        return
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    for s, e in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
        apex = s + int(np.argmax(r[s:e]))
        level = options.edge * float(r[apex])
        lo = apex
        while lo > 0 and r[lo - 1] > level:
            lo -= 1
        hi = apex
        while hi < len(r) - 1 and r[hi + 1] > level:
            hi += 1
        if options.min_ms <= t[hi] - t[lo] <= options.max_ms:
            yield lo, apex, hi


#: Resting values below this are taken as this when a fall is made relative to its rest.
MIN_REST = 0.05


def channel_events(res: np.ndarray, t_ms: np.ndarray, channels: Sequence[str], thr: np.ndarray,
                   options: SpotterOptions = SpotterOptions(), rest: np.ndarray | None = None) -> list[ChannelEvent]:
    """Every excursion of a channel's residual above its threshold, and every fall of a
    :data:`FALLING_READS` channel below minus its threshold (named after the AU it reads).
    ``rest``: ``(T, C)`` resting values of the tracked channels, to make falls relative."""
    t = np.asarray(t_ms, np.float64)
    index = {name: c for c, name in enumerate(channels)}
    events = []
    for c, name in enumerate(channels):
        readings = [] if name in SKIPPED_CHANNELS else [(name, 1.0, "")]
        if name in FALLING_READS:
            readings.append((FALLING_READS[name], -1.0, name))
        other = index.get(name[:-2] + {"_L": "_R", "_R": "_L"}[name[-2:]]) if channel_side(name) else None
        for read_as, sign, source in readings:
            r = sign * res[:, c]
            for lo, apex, hi in _excursions(r, t, float(thr[c]), options):
                peak = float(r[apex])
                opposite = None if other is None else float(np.max(sign * res[lo : hi + 1, other]))
                relative = None
                if source and rest is not None:
                    relative = peak / max(float(rest[apex, c]), MIN_REST)
                    if opposite is not None:
                        opposite /= max(float(rest[apex, other]), MIN_REST)
                events.append(ChannelEvent(read_as, float(t[lo]), float(t[apex]), float(t[hi]), peak,
                                           peak / float(thr[c]), source, relative, opposite))
    # one excursion can be found from two threshold crossings of the same hump: keep one
    unique = {}
    for ev in events:
        key = (ev.channel, ev.read_from, ev.apex_ms)
        if key not in unique or ev.strength > unique[key].strength:
            unique[key] = ev
    return sorted(unique.values(), key=lambda e: e.apex_ms)


def _side(group: Sequence[ChannelEvent], ratio: float) -> str:
    """Side of the strongest AU that has both sides in the channel list. Within that AU, the
    side is judged on its own rises, or on its falls (relative to rest) when a fall is its
    strongest reading; each side's reading is the larger of its own events and what the
    other side's events saw on it (a side that moved a little less than its threshold still
    moved)."""
    by_base: dict[str, list[ChannelEvent]] = {}
    for ev in group:
        if channel_side(ev.channel) is not None:
            by_base.setdefault(base_au(ev.channel), []).append(ev)
    if not by_base:
        return "both"
    events = max(by_base.values(), key=lambda evs: max(e.strength for e in evs))
    falls = max(events, key=lambda e: e.strength).read_from != ""
    slot = {"left": 0.0, "right": 0.0}
    for ev in events:
        if (ev.read_from != "") == falls:
            side = channel_side(ev.channel)
            value = ev.relative if falls and ev.relative is not None else ev.peak
            slot[side] = max(slot[side], value)
            if ev.opposite is not None:
                other = "right" if side == "left" else "left"
                slot[other] = max(slot[other], ev.opposite)
    left, right = slot["left"], slot["right"]
    if min(left, right) >= ratio * max(left, right):
        return "both"
    return "left" if left > right else "right"


def _linked(a: ChannelEvent, b: ChannelEvent, options: SpotterOptions) -> bool:
    """Two channel events belong to one event: apexes within ``merge_ms``, or intervals that
    overlap by at least half of the shorter one (channels of one expression peak a little
    apart: the tracker reads each through its own landmarks)."""
    if abs(a.apex_ms - b.apex_ms) <= options.merge_ms:
        return True
    overlap = min(a.end_ms, b.end_ms) - max(a.start_ms, b.start_ms)
    shorter = min(a.end_ms - a.start_ms, b.end_ms - b.start_ms)
    return shorter > 0 and overlap >= 0.5 * shorter


def merge(events: Iterable[ChannelEvent], options: SpotterOptions = SpotterOptions()) -> list[SpottedEvent]:
    """Group linked channel events (:func:`_linked`, transitively) into spotted events."""
    items = sorted(events, key=lambda e: -e.strength)
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if _linked(items[i], items[j], options):
                parent[root(j)] = root(i)
    groups: dict[int, list[ChannelEvent]] = {}
    for i, ev in enumerate(items):  # strongest first, so each group's first member leads it
        groups.setdefault(root(i), []).append(ev)
    spotted = []
    for g in groups.values():
        lead = g[0]
        aus = []
        for ev in g:
            name = base_au(ev.channel)
            if name not in aus:
                aus.append(name)
        start, end = min(ev.start_ms for ev in g), max(ev.end_ms for ev in g)
        spotted.append(SpottedEvent(start, lead.apex_ms, end, tuple(aus), _side(g, options.side_ratio),
                                    lead.strength, tuple(g)))
    return sorted(spotted, key=lambda e: e.apex_ms)


def spot(au: np.ndarray, t_ms: np.ndarray, channels: Sequence[str], sigma: np.ndarray,
         options: SpotterOptions = SpotterOptions(), level: np.ndarray | None = None) -> list[SpottedEvent]:
    """Spot micro-expressions in an AU stream ``(T, C)`` sampled at ``t_ms``; ``sigma`` is
    the per-channel noise of control material (:func:`noise_sigma` of its residuals).

    ``level``: ``(T, C)`` the values the stream's changes start from, when ``au`` is a
    difference (the control render, for injected − control); by default the stream's own
    running median. Only the side of a fall-read AU uses it."""
    res = residuals(au, t_ms, options)
    if level is None:
        rest = _held(au) - res  # the running median: where each channel rests
    else:
        rest = np.nan_to_num(_held(level))
    return merge(channel_events(res, t_ms, channels, thresholds(sigma, options), options, rest), options)


# -- scoring against the injection log ---------------------------------------------------------

@dataclass(frozen=True)
class LoggedEvent:
    """What was injected, as the engine logged it (output timeline)."""

    type: str
    start_ms: float
    apex_ms: float
    end_ms: float
    side: str
    aus: Mapping[str, float]  # sided channel → relative peak
    peak: float | None = None  # apex intensity, fraction of the calibrated range

    @property
    def primary_au(self) -> str:
        """Base name of the AU with the largest relative peak."""
        return base_au(max(self.aus.items(), key=lambda kv: kv[1])[0])

    @classmethod
    def from_json(cls, d: Mapping) -> LoggedEvent:
        return cls(str(d["type"]), float(d["start_ms"]), float(d["apex_ms"]), float(d["end_ms"]), str(d["side"]),
                   dict(d["aus"]), None if d.get("peak") is None else float(d["peak"]))


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def match(logged: Sequence[LoggedEvent], spotted: Sequence[SpottedEvent], min_iou: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(logged index, spotted index, IoU)`` with IoU ≥ ``min_iou``,
    best pairs first."""
    pairs = []
    for i, g in enumerate(logged):
        for j, s in enumerate(spotted):
            v = iou((g.start_ms, g.end_ms), (s.start_ms, s.end_ms))
            if v >= min_iou:
                pairs.append((v, i, j))
    pairs.sort(reverse=True)
    used_i, used_j, out = set(), set(), []
    for v, i, j in pairs:
        if i in used_i or j in used_j:
            continue
        used_i.add(i)
        used_j.add(j)
        out.append((i, j, v))
    return sorted(out)


def _side_of(g: LoggedEvent, s: SpottedEvent, au: str) -> bool:
    """Whether ``s`` shows ``au`` on the side ``g`` logged (True for an AU without sides)."""
    if not any(channel_side(ch) for ch in g.aus if base_au(ch) == au):
        return True
    channels = [c for c in s.channels if base_au(c.channel) == au]
    side = _side(channels, SpotterOptions.side_ratio) if channels else s.side
    return side == g.side


def au_and_side_correct(g: LoggedEvent, s: SpottedEvent) -> bool:
    """The spotted event shows the logged event's AU on the logged side: either its main
    (largest relative peak) AU is among the spotted AUs, or the spotted event is led by
    (its strongest channel, in units of threshold) one of the logged AUs — so a contempt
    (AU14 with some AU12) that the tracker reads as AU12 counts, and so does a brow flash
    (AU2) read with AU1 beside it; a contempt read as a brow movement does not. The side is
    judged on that AU when it has sides in the channel list (both sides' peaks,
    :attr:`SpotterOptions.side_ratio`)."""
    logged_aus = {base_au(ch) for ch in g.aus}
    candidates = []
    if g.primary_au in s.aus:
        candidates.append(g.primary_au)
    if s.aus and s.aus[0] in logged_aus:
        candidates.append(s.aus[0])
    return any(_side_of(g, s, au) for au in candidates)


@dataclass
class SpottingScore:
    logged: int
    spotted: int
    true_positives: int
    precision: float
    recall: float
    f1: float
    au_side_accuracy: float | None
    apex_error_ms_median: float | None
    apex_errors_ms: list[float]
    per_type: dict[str, dict]

    def to_json(self) -> dict:
        return asdict(self)


def score(logged: Sequence[LoggedEvent], spotted: Sequence[SpottedEvent], min_iou: float = 0.5) -> SpottingScore:
    matches = match(logged, spotted, min_iou)
    tp = len(matches)
    precision = tp / len(spotted) if spotted else (1.0 if not logged else 0.0)
    recall = tp / len(logged) if logged else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    correct = [au_and_side_correct(logged[i], spotted[j]) for i, j, _ in matches]
    errors = [abs(spotted[j].apex_ms - logged[i].apex_ms) for i, j, _ in matches]
    per_type: dict[str, dict] = {}
    matched = {i: j for i, j, _ in matches}
    for i, g in enumerate(logged):
        row = per_type.setdefault(g.type, {"logged": 0, "spotted": 0, "au_side_correct": 0})
        row["logged"] += 1
        if i in matched:
            row["spotted"] += 1
            row["au_side_correct"] += int(au_and_side_correct(g, spotted[matched[i]]))
    return SpottingScore(
        logged=len(logged),
        spotted=len(spotted),
        true_positives=tp,
        precision=round(precision, 4),
        recall=round(recall, 4),
        f1=round(f1, 4),
        au_side_accuracy=round(sum(correct) / len(correct), 4) if correct else None,
        apex_error_ms_median=round(float(np.median(errors)), 1) if errors else None,
        apex_errors_ms=[round(e, 1) for e in errors],
        per_type=per_type,
    )
