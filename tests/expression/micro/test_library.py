"""The bundled library holds every type of micro-expressions.md Appendix A, user files are
checked entry by entry, and sampled timing follows the library's distributions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vcam_me.errors import MicroExpressionError
from vcam_me.expression.micro import (
    DEFAULT_LIBRARY_PATH,
    MicroEngine,
    MicroLibrary,
    expand_aus,
)
from vcam_me.expression.micro.library import TOTAL_CAP_MS

# Appendix A id → (our name, the AUs of its main pattern)
APPENDIX_A = {
    "HAPPY_SUPPRESSED_SMILE": ("suppressed_smile", {"AU12"}),
    "HAPPY_DUCHENNE_RARE": ("duchenne_smile", {"AU12", "AU6"}),
    "CONTEMPT_UNILATERAL_DIMPLER": ("contempt_dimpler", {"AU14"}),
    "DISGUST_BROW_LID": ("brow_lid_disgust", {"AU4", "AU7"}),
    "DISGUST_NOSE_UPPERLIP": ("nose_upper_lip_disgust", {"AU10"}),
    "ANGER_BROW_LOWER": ("brow_lowerer", {"AU4"}),
    "ANGER_LID_TIGHTEN": ("lid_tightener", {"AU7"}),
    "REPRESSION_LIP_SUPPRESSION": ("lip_suppression", {"AU17_lower", "AU17_upper"}),
    "SADNESS_INNER_BROW": ("inner_brow", {"AU1"}),
    "SURPRISE_BROW_RAISE": ("brow_raise", {"AU1", "AU2"}),
    "SURPRISE_LID_RAISE": ("lid_raise", {"AU5"}),
    "BROW_FLASH_UNILATERAL_AU2": ("brow_flash", {"AU2"}),
    "FEAR_LIP_STRETCH": ("lip_stretch", {"AU20"}),
}


@pytest.fixture(scope="module")
def library() -> MicroLibrary:
    return MicroLibrary.load()


def test_every_appendix_a_type_is_in_the_library(library):
    assert set(library.names) == {name for name, _ in APPENDIX_A.values()}
    for appendix_id, (name, aus) in APPENDIX_A.items():
        mtype = library[name]
        assert set(mtype.variants[0].aus) == aus, appendix_id
        assert mtype.total.q3 <= TOTAL_CAP_MS
        assert abs(sum(mtype.laterality.values()) - 1) < 0.01
        assert mtype.source.startswith(f"Appendix A {appendix_id}")


def test_library_figures_are_the_appendix_figures(library):
    smile = library["suppressed_smile"]
    assert (smile.onset.median, smile.onset.q1, smile.onset.q3) == (175, 125, 225)
    assert (smile.total.median, smile.total.q1, smile.total.q3) == (375, 300, 425)
    flash = library["brow_flash"]
    assert flash.laterality["left"] + flash.laterality["right"] == pytest.approx(0.93)


def test_bilateral_aus_are_written_once_and_expanded_by_side():
    assert expand_aus({"AU12": 1.0}, "left") == {"AU12_L": 1.0}
    assert expand_aus({"AU12": 1.0}, "right") == {"AU12_R": 1.0}
    assert expand_aus({"AU1": 0.7, "AU2": 1.0}, "both") == {"AU1": 0.7, "AU2_L": 1.0, "AU2_R": 1.0}


def test_unknown_type_is_a_clear_error(library):
    with pytest.raises(MicroExpressionError, match="unknown micro-expression type 'smirk'.*suppressed_smile"):
        library["smirk"]


GOOD = """
[type.smirk]
description = "one-sided smile"
source = "mine"
aus = { AU12 = 1.0, AU14 = 0.5 }
laterality = { left = 0.5, right = 0.5 }
onset_ms = { median = 150, q1 = 120, q3 = 180 }
offset_ms = { median = 150, q1 = 120, q3 = 180 }
total_ms = { median = 300, q1 = 250, q3 = 350 }
"""


def test_a_user_file_adds_and_replaces_types(tmp_path, library):
    user = tmp_path / "micro_expressions.toml"
    user.write_text(GOOD + GOOD.replace("[type.smirk]", "[type.brow_flash]"), encoding="utf-8")
    both = MicroLibrary.load(DEFAULT_LIBRARY_PATH, user)
    assert "smirk" in both and len(both.names) == len(library.names) + 1
    assert set(both["brow_flash"].variants[0].aus) == {"AU12", "AU14"}  # replaced by the user's
    assert both.intensity_letters == library.intensity_letters


# (snippet replacing a line of GOOD, the line number the error must name, words of the reason)
MALFORMED = [
    ('aus = { AU12 = 1.0, AU14 = 0.5 }', 'aus = { AU12 = 1.5 }', 5, "relative peak is in (0, 1]"),
    ('aus = { AU12 = 1.0, AU14 = 0.5 }', 'aus = { AU12_L = 1.0 }', 5, "write the AU once"),
    ('aus = { AU12 = 1.0, AU14 = 0.5 }', 'aus = { AU25 = 1.0 }', 5, "derived"),
    ('aus = { AU12 = 1.0, AU14 = 0.5 }', 'aus = { AU99 = 1.0 }', 5, "unknown AU 'AU99'"),
    ('laterality = { left = 0.5, right = 0.5 }', 'laterality = { left = 0.5, right = 0.6 }', 6, "sum to 1.100"),
    ('laterality = { left = 0.5, right = 0.5 }', 'laterality = { up = 1.0 }', 6, "side 'up'"),
    ('onset_ms = { median = 150, q1 = 120, q3 = 180 }', 'onset_ms = { median = 100, q1 = 120, q3 = 180 }', 7,
     "q1 ≤ median ≤ q3"),
    ('onset_ms = { median = 150, q1 = 120, q3 = 180 }', 'onset_ms = 150', 7, "{ median = ms"),
    ('total_ms = { median = 300, q1 = 250, q3 = 350 }', 'total_ms = { median = 450, q1 = 400, q3 = 600 }', 9,
     "at most 500 ms"),
    ('source = "mine"', 'source = "mine"\ncolour = "red"', 5, "unknown key 'colour'"),
    ('source = "mine"\n', '', 2, "missing source"),
    ('[type.smirk]', '[type.Smirk]', 2, "lower-case"),
]


@pytest.mark.parametrize("old,new,line,reason", MALFORMED)
def test_a_malformed_user_entry_is_refused_with_file_line_and_reason(tmp_path, old, new, line, reason):
    user = tmp_path / "mine.toml"
    # a valid type first, so the line numbers of the broken one are not the file's first lines
    text = "# my types\n" + GOOD.replace(old, new)
    user.write_text(text, encoding="utf-8")
    with pytest.raises(MicroExpressionError) as err:
        MicroLibrary.load(DEFAULT_LIBRARY_PATH, user)
    message = str(err.value)
    assert message.startswith(f"{user}, line {line + 1}: "), message
    assert reason in message
    assert "\n" not in message


def test_one_sided_laterality_needs_an_au_with_sides(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text(GOOD.replace("AU12 = 1.0, AU14 = 0.5", "AU1 = 1.0"), encoding="utf-8")
    with pytest.raises(MicroExpressionError, match="line 6: .*can only be drawn on both sides"):
        MicroLibrary.load(DEFAULT_LIBRARY_PATH, user)


def test_broken_toml_and_missing_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[type.x\n", encoding="utf-8")
    with pytest.raises(MicroExpressionError, match="not valid TOML"):
        MicroLibrary.load(DEFAULT_LIBRARY_PATH, bad)
    with pytest.raises(MicroExpressionError, match="not found"):
        MicroLibrary.load(tmp_path / "absent.toml")


def test_intensity_letters_map_to_fractions_of_the_calibrated_range(library):
    assert library.intensity_range("A-B") == (0.10, 0.30)
    assert library.intensity_range("C") == (0.30, 0.50)
    with pytest.raises(ValueError):
        library.intensity_range("B-A")


# -- timing statistics ---------------------------------------------------------------------------
_Z75 = 0.6744897501960817
_QUARTILES = ((0.25, "q1", -_Z75), (0.5, "median", 0.0), (0.75, "q3", _Z75))


def _phi(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _monte_carlo_error(duration, p: float, z: float, n: int) -> float:
    """Standard error of the p-quantile of n draws from the two-piece normal the engine samples."""
    half = (duration.median - duration.q1) if p <= 0.5 else (duration.q3 - duration.median)
    return math.sqrt(p * (1 - p) / n) / _phi(z) * max(half / _Z75, 1.0)


def _library_precision(duration, p: float, z: float, clips: int) -> float:
    """Standard error of the library's own p-quantile, estimated from `clips` database clips."""
    sigma = (duration.q3 - duration.q1) / 1.349
    return math.sqrt(p * (1 - p) / clips) / _phi(z) * sigma


def test_timing_of_1000_sampled_events_of_each_type_matches_the_library(library):
    """Onset and offset are what the envelope is made of: their medians and quartiles must
    match within 4 Monte-Carlo standard errors of 1,000 draws (or 5 %: the 500 ms cap shortens
    the longest events). The databases give onset, offset and total as separate marginals, not
    their joint, so onset + offset can follow the total only as far as the library's figures are
    known: within 2 standard errors of a quantile estimated from the type's number of clips."""
    n = 1000
    failures = []
    for name, mtype in library.types.items():
        engine = MicroEngine(library, seed=11)
        events = [engine.trigger(name, 1000.0 * i) for i in range(n)]  # 1 s apart: never overlapping
        assert all(e is not None for e in events)
        onset = np.array([e.apex_ms - e.start_ms for e in events])
        offset = np.array([e.end_ms - e.apex_ms for e in events])
        total = onset + offset
        assert total.max() <= TOTAL_CAP_MS + 1e-6
        for label, sample, duration in (("onset", onset, mtype.onset), ("offset", offset, mtype.offset),
                                        ("total", total, mtype.total)):
            for p, key, z in _QUARTILES:
                got = float(np.percentile(sample, 100 * p))
                want = getattr(duration, key)
                if label == "total":
                    allowed = 2 * _library_precision(duration, p, z, mtype.clips)
                else:
                    allowed = max(4 * _monte_carlo_error(duration, p, z, n), 0.05 * want)
                if abs(got - want) > allowed:
                    failures.append(f"{name} {label} {key}: sampled {got:.1f} ms, library {want:g} ± {allowed:.1f}")
    assert not failures, "\n".join(failures)


def test_the_engine_samples_each_side_as_often_as_the_library_says(library):
    engine = MicroEngine(library, seed=5)
    sides = [engine.trigger("brow_flash", 1000.0 * i).side for i in range(2000)]
    lat = library["brow_flash"].laterality
    for side in ("left", "right", "both"):
        assert sides.count(side) / len(sides) == pytest.approx(lat[side], abs=0.03)


def test_bundled_library_path_is_the_config_file():
    assert DEFAULT_LIBRARY_PATH == Path(__file__).resolve().parents[3] / "config" / "micro_expressions.toml"
