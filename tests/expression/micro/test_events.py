"""The event log: JSON form, output-timeline times, and never overwriting a file."""

from __future__ import annotations

import json

import pytest

from vcam_me.errors import OutputError
from vcam_me.expression.micro import MicroEvent, events_from_json, events_to_json

EVENT = MicroEvent("suppressed_smile", {"AU12_L": 1.0}, "left", 0.21, 10_200.0, 10_371.44, 10_540.2, "script")


def test_an_event_as_json():
    assert EVENT.to_json(origin_ms=10_000.0) == {
        "type": "suppressed_smile", "aus": {"AU12_L": 1.0}, "side": "left", "peak": 0.21, "start_ms": 200.0,
        "apex_ms": 371.4, "end_ms": 540.2, "source": "script", "held": False}


def test_the_log_round_trips_on_the_output_timeline(tmp_path):
    path = events_to_json([EVENT], tmp_path / "log.json", origin_ms=10_000.0, fps=60, mode="script.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "vcam-me micro-expression events" and doc["fps"] == 60 and doc["mode"] == "script.json"
    (back,) = events_from_json(path)
    assert back.start_ms == 200.0 and back.type == EVENT.type and back.aus == EVENT.aus


def test_an_existing_file_is_never_replaced_unless_forced(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text("precious")
    with pytest.raises(OutputError, match="exists.*--force"):
        events_to_json([EVENT], path)
    assert path.read_text() == "precious"
    events_to_json([EVENT], path, force=True)
    assert len(events_from_json(path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json"]  # no temporary file left


def test_an_unwritable_place_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write the event log"):
        events_to_json([EVENT], blocker / "log.json")
