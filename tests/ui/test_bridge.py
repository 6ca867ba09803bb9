"""The bridge's stream status when the virtual camera vanishes and returns (no Qt needed)."""

from __future__ import annotations

import numpy as np

from vcam_me.types import ExpressionState, RenderedFrame
from vcam_me.ui.bridge import PipelineBridge, StreamStatus


def _frame(bridge: PipelineBridge, face: bool, t: int = 0) -> None:
    state = ExpressionState.neutral(t)
    if face:
        import dataclasses

        state = dataclasses.replace(state, face_present=True)
    bridge.frame(RenderedFrame(np.zeros((4, 4, 3), np.uint8), t, None), state)


def test_a_lost_virtual_camera_outranks_live_until_it_is_back():
    bridge = PipelineBridge()
    bridge.status("starting")
    bridge.status("streaming")
    _frame(bridge, face=True)
    bridge.status("output_lost")
    _frame(bridge, face=True, t=1)  # frames keep flowing: they must not hide the lost camera
    assert bridge.take().statuses == [StreamStatus.STARTING, StreamStatus.IDLE, StreamStatus.LIVE,
                                      StreamStatus.NO_VIRTUAL_CAMERA]
    bridge.paused = True
    bridge.refresh()
    assert bridge.stream_status is StreamStatus.NO_VIRTUAL_CAMERA
    bridge.status("output_back")
    assert bridge.stream_status is StreamStatus.PAUSED
    bridge.paused = False
    _frame(bridge, face=True, t=2)
    assert bridge.take().statuses == [StreamStatus.PAUSED, StreamStatus.LIVE]


def test_a_camera_busy_at_start_shows_once_streaming_and_a_new_session_starts_clean():
    bridge = PipelineBridge()
    bridge.status("starting")
    bridge.status("output_lost")  # said while the session opens its outputs
    assert bridge.stream_status is StreamStatus.STARTING
    bridge.status("streaming")
    _frame(bridge, face=False)
    assert bridge.stream_status is StreamStatus.NO_VIRTUAL_CAMERA
    bridge.status("stopped")
    bridge.status("starting")
    bridge.status("streaming")
    assert bridge.stream_status is StreamStatus.IDLE
