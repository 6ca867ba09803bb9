"""Scripted sequences: the JSON format, its errors, and playing it on the render clock."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcam_me.errors import MicroExpressionError
from vcam_me.expression.micro import (
    DEFAULT_LIBRARY_PATH,
    MicroEngine,
    MicroLibrary,
    ScriptedTrigger,
    load_script,
    parse_script,
)
from vcam_me.types import AU_CHANNELS

FRAME_60 = 1000.0 / 60
UNSIDED = """
[type.pucker]
description = "lips pushed forward"
source = "test"
aus = { AU18 = 1.0 }
laterality = { both = 1.0 }
onset_ms = { median = 150, q1 = 120, q3 = 180 }
offset_ms = { median = 150, q1 = 120, q3 = 180 }
total_ms = { median = 300, q1 = 250, q3 = 350 }
"""


@pytest.fixture(scope="module")
def library() -> MicroLibrary:
    return MicroLibrary.load()


def _write(tmp_path, data) -> str:
    path = tmp_path / "script.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_a_script_file_loads_sorted(tmp_path, library):
    path = _write(tmp_path, [
        {"t_ms": 3000, "type": "brow_lowerer"},
        {"t_ms": 1200, "type": "suppressed_smile", "side": "left", "peak": 0.4},
        {"t_ms": 5000, "type": "brow_raise", "hold_ms": 1500},
    ])
    entries = load_script(path, library)
    assert [e.t_ms for e in entries] == [1200, 3000, 5000]
    assert entries[0].side == "left" and entries[0].peak == 0.4 and entries[2].hold_ms == 1500


@pytest.mark.parametrize("data,reason", [
    ({"t_ms": 1}, "expected a JSON list"),
    ([{"type": "brow_lowerer"}], "event 1: missing t_ms"),
    ([{"t_ms": 0, "type": "brow_lowerer"}, {"t_ms": 10, "type": "wink"}], "event 2: unknown type 'wink'"),
    ([{"t_ms": -5, "type": "brow_lowerer"}], "t_ms = -5"),
    ([{"t_ms": 0, "type": "brow_flash", "side": "top"}], "side = 'top'"),
    ([{"t_ms": 0, "type": "brow_flash", "peak": 0}], "peak = 0"),
    ([{"t_ms": 0, "type": "brow_flash", "hold_ms": -1}], "hold_ms = -1"),
    ([{"t_ms": 0, "type": "brow_flash", "when": 3}], "unknown key 'when'"),
    ([["brow_flash", 0]], "expected an object"),
])
def test_a_malformed_script_is_a_one_line_error_naming_the_entry(tmp_path, library, data, reason):
    path = _write(tmp_path, data)
    with pytest.raises(MicroExpressionError) as err:
        load_script(path, library)
    assert str(err.value).startswith(str(path)) and reason in str(err.value) and "\n" not in str(err.value)


def test_one_side_of_a_type_without_sides_is_refused(tmp_path, library):
    user = tmp_path / "mine.toml"
    user.write_text(UNSIDED, encoding="utf-8")
    both = MicroLibrary.load(DEFAULT_LIBRARY_PATH, user)
    with pytest.raises(MicroExpressionError, match="event 1: side = 'left': pucker has no AU with sides"):
        parse_script([{"t_ms": 0, "type": "pucker", "side": "left"}], both)


def test_broken_json_names_line_and_column(tmp_path, library):
    path = _write(tmp_path, '[\n  {"t_ms": 100, "type": "brow_lowerer"},\n  {"t_ms": 200 "type": "x"}\n]')
    with pytest.raises(MicroExpressionError, match=r"line 3, column 16: not valid JSON"):
        load_script(path, library)
    with pytest.raises(MicroExpressionError, match="not found"):
        load_script(tmp_path / "absent.json", library)


def test_the_script_plays_each_event_at_its_exact_time(library):
    engine = MicroEngine(library, seed=1)
    entries = parse_script([
        {"t_ms": 1200, "type": "suppressed_smile", "side": "left", "peak": 0.4},
        {"t_ms": 1250, "type": "brow_lowerer"},
        {"t_ms": 1300, "type": "suppressed_smile"},  # conflicts with the first: skipped
        {"t_ms": 3000, "type": "brow_raise", "hold_ms": 800, "peak": 0.5},
    ], library)
    script = ScriptedTrigger(engine, entries)
    neutral = np.zeros(len(AU_CHANNELS), np.float32)
    for k in range(300):
        t = round(k * FRAME_60)
        script.tick(t, neutral)
        engine.injected(t, neutral)
    events = engine.events
    assert [(e.type, e.start_ms, e.source) for e in events] == [
        ("suppressed_smile", 1200.0, "script"), ("brow_lowerer", 1250.0, "script"), ("brow_raise", 3000.0, "script")]
    assert events[0].side == "left" and events[0].peak == 0.4
    held = events[2]
    assert held.held and held.end_ms == pytest.approx(3800.0 + library.held.offset_ms)
    assert [s[0].t_ms for s in script.skipped] == [1300]
    assert script.finished


def test_script_times_count_from_the_first_output_frame(library):
    engine = MicroEngine(library, seed=2)
    script = ScriptedTrigger(engine, parse_script([{"t_ms": 500, "type": "brow_flash"}], library), origin_ms=10_000)
    neutral = np.zeros(len(AU_CHANNELS), np.float32)
    assert script.tick(10_400, neutral) == []
    (event,) = script.tick(10_520, neutral)
    assert event.start_ms == 10_500
