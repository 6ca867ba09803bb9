"""The tray app's Qt layer, offscreen (pytest-qt): the menu drives a real live stream (the
bundled clip through MediaPipe and the avatar into an in-memory sink), the icon follows its
status, notifications reach the user, and the GUI thread never stalls while it streams."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from vcam_me.app import BUNDLED_AVATAR, LiveSession
from vcam_me.clock import now_ms
from vcam_me.ui.bridge import StreamStatus
from vcam_me.ui.controller import TrayController
from vcam_me.ui.qt_bridge import QtBridge
from vcam_me.ui.qt_icons import status_pixmap
from vcam_me.ui.qt_tray import TrayApp

from .conftest import second_avatar


class Watchdog:
    """A 10 ms QTimer on the GUI thread; the gaps between its ticks show any stall."""

    def __init__(self):
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self):
        self.ticks.clear()
        self.timer.start()

    def stop(self) -> float:
        """The longest gap, in ms."""
        self.timer.stop()
        return float(np.max(np.diff(self.ticks)) * 1000.0)


def make_tray(cfg, make_session, folder, **kwargs):
    bridge = QtBridge()
    controller = TrayController(cfg, bridge.listener, make_session=make_session,
                                avatars=kwargs.pop("avatars", lambda: [("sample", BUNDLED_AVATAR)]),
                                log_folder=lambda: folder / "logs")
    opened, quits = [], []
    tray = TrayApp(controller, bridge, open_folder=opened.append, use_tray=False, on_quit=lambda: quits.append(True))
    return tray, controller, bridge, opened, quits


def test_each_status_has_its_own_icon(qapp):
    images = {s: status_pixmap(s, 32).toImage() for s in StreamStatus}
    raw = {s: bytes(img.constBits()) for s, img in images.items()}
    assert len(set(raw.values())) == len(StreamStatus)
    centre = {s: img.pixelColor(16, 16) for s, img in images.items()}
    assert centre[StreamStatus.LIVE].name() == "#ffffff"  # the lens
    left = {s: images[s].pixelColor(5, 16) for s in StreamStatus}
    assert left[StreamStatus.LIVE].green() > 120 and left[StreamStatus.ERROR].red() > 180
    assert left[StreamStatus.PAUSED].blue() > 180


@pytest.mark.slow
def test_the_tray_menu_drives_a_real_stream(qtbot, session_cfg, make_session, memory_sink, private_user_dirs):
    avatar = second_avatar(private_user_dirs)
    tray, controller, bridge, opened, quits = make_tray(
        session_cfg, make_session, private_user_dirs, avatars=lambda: [("sample", BUNDLED_AVATAR), ("mirrored", avatar)])
    tray.show()
    assert tray.actions["start_stop"].text() == "Start"
    tray.actions["start_stop"].trigger()
    qtbot.waitUntil(lambda: bridge.stream_status is StreamStatus.LIVE and memory_sink.count >= 10, timeout=30_000)
    qtbot.waitUntil(lambda: "live" in tray.status_line.text(), timeout=5000)  # once the GUI has read the mail
    assert tray.actions["start_stop"].text() == "Stop"
    session = controller.session

    # the preview shows the frames as they are sent, with the overlay
    tray.actions["preview"].trigger()
    assert tray.preview.isVisible()
    qtbot.waitUntil(lambda: tray.preview.view.frames_shown >= 5, timeout=5000)

    # switching avatar from the menu: the same sink gets the new avatar's frames within 0.5 s
    tray.menu.aboutToShow.emit()  # as when the user opens the menu: the avatar list is read again
    assert tray.actions["avatar:sample"].isChecked()
    # the session prepares the menu's other avatars in the background once it streams
    qtbot.waitUntil(session.avatars_prepared.is_set, timeout=30_000)
    ready_ms = []
    old = memory_sink.frames[-1].image.astype(np.int16)  # the sample avatar, before the switch is asked for
    clicked_ms = now_ms()
    tray.actions["avatar:mirrored"].trigger()
    tray.pending_switch.add_done_callback(lambda _: ready_ms.append(now_ms()))
    qtbot.waitUntil(lambda: bool(ready_ms), timeout=30_000)
    qtbot.waitUntil(lambda: memory_sink.frames[-1].timestamp_ms > ready_ms[0] + 800, timeout=10_000)
    frames = memory_sink.frames
    new = frames[-1].image.astype(np.int16)

    def shows_new(image):
        image = image.astype(np.int16)
        return np.abs(image - new).mean() < np.abs(image - old).mean()

    first_new = next(f for f in frames if f.timestamp_ms >= ready_ms[0] and shows_new(f.image))
    print(f"avatar switch: new avatar's frames {first_new.timestamp_ms - clicked_ms} ms after the click "
          f"({ready_ms[0] - clicked_ms} ms to build it, {first_new.timestamp_ms - ready_ms[0]} ms to show it)")
    assert first_new.timestamp_ms - clicked_ms <= 500
    assert all(shows_new(f.image) for f in frames if f.timestamp_ms > ready_ms[0] + 500)
    assert controller.session is session and session.pipeline.sink.sinks[0] is memory_sink  # nothing reopened
    tray.menu.aboutToShow.emit()
    assert tray.actions["avatar:mirrored"].isChecked()

    # micro-expressions: mode and rate reach the running expression stage
    tray.actions["micro:auto"].trigger()
    tray.actions["rate:12"].trigger()
    assert [type(t).__name__ for t in session.expression.triggers] == ["AutoTrigger"]
    assert session.expression.triggers[0].rate_per_min == 12
    tray.actions["micro:off"].trigger()
    assert session.expression.triggers == []

    # pause to idle: the icon and the status line say so, the idle animator takes over
    tray.actions["pause"].trigger()
    qtbot.waitUntil(lambda: "paused" in tray.status_line.text(), timeout=2000)
    assert session.expression.idle.paused and tray.tray.icon().pixmap(32).toImage() == status_pixmap(StreamStatus.PAUSED, 32).toImage()
    tray.actions["pause"].trigger()
    qtbot.waitUntil(lambda: bridge.stream_status is StreamStatus.LIVE, timeout=5000)

    tray.actions["mirror"].trigger()
    assert controller.mirror and session.mirror

    # the log folder opens
    tray.actions["log_folder"].trigger()
    assert opened == [private_user_dirs / "logs"] and opened[0].is_dir()

    # 30 → 60 fps restarts the stream at the new rate, on the same sink
    tray.actions["fps:60"].trigger()
    qtbot.waitUntil(lambda: controller.session is not session and controller.session.pipeline is not None, timeout=30_000)
    assert controller.session.pipeline.fps == 60 and controller.session.mirror
    seen = memory_sink.count
    qtbot.waitUntil(lambda: memory_sink.count > seen + 10, timeout=10_000)

    # the set-up entry opens the wizard; the stream lets go of the camera, and the user is told
    tray.actions["setup"].trigger()
    assert tray.wizard.isVisible() and tray.wizard.currentPage() is tray.wizard.pages["camera"]
    qtbot.waitUntil(lambda: not controller.running, timeout=10_000)
    assert "Streaming stopped" in [t for t, _ in tray.notifications]
    tray.wizard.reject()

    tray.actions["quit"].trigger()
    assert quits == [True] and not controller.running


@pytest.mark.slow
def test_the_gui_thread_never_stalls_while_streaming(qtbot, session_cfg, make_session, memory_sink, private_user_dirs):
    tray, controller, _bridge, *_ = make_tray(session_cfg, make_session, private_user_dirs)
    tray.open_preview()
    controller.start()
    qtbot.waitUntil(lambda: memory_sink.count >= 10, timeout=30_000)
    watchdog = Watchdog()
    watchdog.start()
    shown = tray.preview.view.frames_shown
    qtbot.wait(3000)  # streaming, the preview painting every frame with its overlay
    worst_ms = watchdog.stop()
    assert tray.preview.view.frames_shown - shown >= 30  # it really was drawing
    controller.stop(wait_s=5.0)
    print(f"GUI thread: longest gap between 10 ms timer ticks {worst_ms:.1f} ms over 3 s of streaming")
    assert worst_ms < 50, f"the GUI thread stalled for {worst_ms:.1f} ms"


def test_notices_and_errors_reach_the_user(qtbot, session_cfg, private_user_dirs):
    """A missing virtual camera (the real sink, with a backend that does not exist): a
    one-line notification, and the icon turns to error."""
    import dataclasses

    cfg = dataclasses.replace(session_cfg, output=dataclasses.replace(session_cfg.output, virtualcam_backend="none-here"))

    def real_outputs(cfg, listener, **kwargs):
        return LiveSession(cfg, listener, hotkeys=False, microphone=False, **kwargs)

    tray, controller, bridge, *_ = make_tray(cfg, real_outputs, private_user_dirs)
    controller.start()
    qtbot.waitUntil(lambda: bridge.stream_status is StreamStatus.ERROR, timeout=20_000)
    # the bridge's status flips on the session's thread; the GUI shows it when it has read the mail
    qtbot.waitUntil(lambda: tray.preview.message.text().startswith("vcam-me: "), timeout=5000)  # no tray here: the preview window says it
    titles = [t for t, _ in tray.notifications]
    assert "Virtual camera missing" in titles
    assert all("\n" not in text for _, text in tray.notifications)
    assert "error" in tray.status_line.text() and tray.actions["start_stop"].text() == "Start"
    bridge.listener.notice("Camera lost", "The camera stopped delivering frames")  # as the session says it
    qtbot.waitUntil(lambda: tray.notifications[-1][0] == "Camera lost", timeout=2000)


def test_a_lost_virtual_camera_shows_in_the_icon_and_status_line_until_it_is_back(qtbot, session_cfg, private_user_dirs):
    """As the live session reports it (app.LiveSession._virtual_camera_changed): the stream
    stays on (Stop in the menu), the icon and status line say the call sees nothing."""
    tray, _controller, bridge, *_ = make_tray(session_cfg, lambda *a, **k: None, private_user_dirs)
    listener = bridge.listener
    listener.status("starting")
    listener.status("streaming")
    listener.notice("Virtual camera lost", "Virtual camera lost: device gone; retrying every 2 s.")
    listener.status("output_lost")
    qtbot.waitUntil(lambda: "virtual camera lost, retrying" in tray.status_line.text() and bool(tray.notifications),
                    timeout=2000)
    assert bridge.stream_status is StreamStatus.NO_VIRTUAL_CAMERA
    assert tray.actions["start_stop"].text() == "Stop"
    assert tray.tray.icon().pixmap(32).toImage() == status_pixmap(StreamStatus.NO_VIRTUAL_CAMERA, 32).toImage()
    assert tray.notifications[-1][0] == "Virtual camera lost"
    listener.status("output_back")
    qtbot.waitUntil(lambda: "idle" in tray.status_line.text(), timeout=2000)  # drawn once the GUI thread has it
    assert bridge.stream_status is StreamStatus.IDLE
