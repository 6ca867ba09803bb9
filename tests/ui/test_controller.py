"""The tray's actions on a real live session (no Qt): the bundled clip through MediaPipe and
the avatar into an in-memory sink."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vcam_me.ui.bridge import PipelineBridge, StreamStatus
from vcam_me.ui.controller import (
    TrayController,
    default_micro_mode,
)

from ..helpers import wait_until

pytestmark = pytest.mark.slow


def test_actions_steer_the_running_stream(session_cfg, make_session, memory_sink, tmp_path):
    import dataclasses

    # a persona that never frowns: automatic mode must not pick that type
    session_cfg = dataclasses.replace(session_cfg, micro=dataclasses.replace(session_cfg.micro, persona={"brow_lowerer": 0.0}))
    bridge = PipelineBridge()
    tray = TrayController(session_cfg, bridge, make_session=make_session, log_folder=lambda: tmp_path / "logs")
    assert tray.status is StreamStatus.STOPPED and not tray.running
    tray.start()
    assert wait_until(lambda: memory_sink.count >= 15 and bridge.stream_status in (StreamStatus.LIVE, StreamStatus.IDLE)), bridge.take()
    assert bridge.stream_status is StreamStatus.LIVE  # the bundled clip shows a face
    session = tray.session

    tray.set_micro_mode("auto")
    assert [type(t).__name__ for t in session.expression.triggers] == ["AutoTrigger"]
    tray.set_micro_rate(12)
    assert session.expression.triggers[0].rate_per_min == 12
    chosen_from = {t.name for t in session.expression.triggers[0]._types}
    assert "brow_lowerer" not in chosen_from and "suppressed_smile" in chosen_from
    tray.set_micro_mode("off")
    assert session.expression.triggers == [] and not session._gate.enabled

    tray.set_paused(True)
    assert bridge.stream_status is StreamStatus.PAUSED and session.expression.idle.paused
    tray.set_paused(False)
    assert not session.expression.idle.paused
    assert wait_until(lambda: bridge.stream_status is StreamStatus.LIVE)

    # mirror: the picture above the label flips left to right from the next frames on
    before = memory_sink.frames[-1].image.astype(np.int16)
    tray.set_mirror(True)
    seen = memory_sink.count
    assert wait_until(lambda: memory_sink.count >= seen + 3)
    after = memory_sink.frames[-1].image.astype(np.int16)
    # between the start banner and the "AI" badge at the top and the label at the bottom
    picture = (slice(50, 118), slice(20, 300))
    flipped = np.abs(after[picture] - before[:, ::-1][picture]).mean()
    assert flipped < 0.5 * np.abs(after[picture] - before[picture]).mean()

    assert tray.log_folder().is_dir()

    assert tray.run_setup() is True  # the set-up takes the camera: streaming stops
    assert wait_until(lambda: not tray.running and bridge.stream_status is StreamStatus.STOPPED)
    assert tray.run_setup() is False


def test_changing_the_frame_rate_restarts_the_stream_at_the_new_rate(session_cfg, make_session, memory_sink):
    bridge = PipelineBridge()
    tray = TrayController(session_cfg, bridge, make_session=make_session)
    tray.start()
    assert wait_until(lambda: memory_sink.count >= 10)
    first = tray.session
    tray.set_fps(60)
    assert wait_until(lambda: tray.session is not first and tray.running and tray.session.pipeline is not None)
    assert first.running is False and tray.session.fps == 60 and tray.session.pipeline.fps == 60
    seen = memory_sink.count
    assert wait_until(lambda: memory_sink.count >= seen + 10)  # the same sink keeps getting frames
    tray.quit()
    assert not tray.running


def test_bad_choices_are_refused_with_a_reason(session_cfg):
    tray = TrayController(session_cfg, PipelineBridge())
    with pytest.raises(ValueError, match="expected one of"):
        tray.set_micro_mode("sometimes")
    with pytest.raises(ValueError, match="30 or 60"):
        tray.set_fps(45)
    with pytest.raises(ValueError, match="0..60"):
        tray.set_micro_rate(100)
    assert default_micro_mode(session_cfg) == "hotkeys"


def test_the_bridge_wakes_the_gui_once_and_keeps_only_the_newest_frame():
    from vcam_me.types import ExpressionState, RenderedFrame

    wakes = []
    bridge = PipelineBridge(wake=lambda: wakes.append(threading.current_thread().name))
    bridge.status("starting")
    bridge.status("streaming")

    def render_thread():
        for t in range(50):
            state = ExpressionState.neutral(t)
            bridge.frame(RenderedFrame(np.full((4, 4, 3), t, np.uint8), t, None), state)

    worker = threading.Thread(target=render_thread, name="render")
    worker.start()
    worker.join()
    bridge.notice("Camera lost", "…")
    assert wakes == ["MainThread"]  # one wake until the GUI takes the mail
    mail = bridge.take()
    assert mail.statuses == [StreamStatus.STARTING, StreamStatus.IDLE]
    assert int(mail.frame.frame.image[0, 0, 0]) == 49 and mail.notices == [("Camera lost", "…")]
    bridge.error("boom")
    assert len(wakes) == 2 and bridge.take().errors == ["boom"]
