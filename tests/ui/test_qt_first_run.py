"""The first-run welcome window (offscreen): it appears once, offers the wizard, and when no
virtual-camera driver is present shows what to install with a page the user can open."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QTimer

from vcam_me.config import load_config
from vcam_me.ui import first_run
from vcam_me.ui.first_run import (
    OBS_DOWNLOAD_URL,
    UNITYCAPTURE_URL,
    V4L2LOOPBACK_URL,
    driver_advice,
)
from vcam_me.ui.qt_first_run import FirstRunDialog


@pytest.mark.parametrize("system, version, url", [("Linux", None, V4L2LOOPBACK_URL), ("Windows", "11", OBS_DOWNLOAD_URL),
                                                  ("Windows", "8.1", UNITYCAPTURE_URL), ("Darwin", "14.5", OBS_DOWNLOAD_URL)])
def test_the_link_and_the_button_open_the_drivers_page(qtbot, monkeypatch, system, version, url):
    monkeypatch.setattr("vcam_me.output.virtualcam._system", lambda: system)
    opened = []
    dialog = FirstRunDialog(driver_advice(version=version), "missing", open_url=opened.append)
    qtbot.addWidget(dialog)
    assert url in dialog.driver_label.text() and "No virtual camera driver found" in dialog.driver_label.text()
    dialog.open_button.click()
    dialog.driver_label.linkActivated.emit(url)  # what a click on the link sends
    assert opened == [url, url]


def test_with_a_driver_there_is_nothing_to_install(qtbot):
    opened = []
    dialog = FirstRunDialog(None, "v4l2loopback: /dev/video9 (vcam-me)", open_url=opened.append)
    qtbot.addWidget(dialog)
    assert dialog.open_button is None and "/dev/video9" in dialog.driver_label.text()


def test_set_up_asks_for_the_wizard(qtbot):
    dialog = FirstRunDialog(None, "ok")
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.setup_requested, timeout=1000):
        dialog.setup_button.click()
    assert not dialog.isVisible()


def test_the_tray_app_welcomes_once(qapp, private_user_dirs, monkeypatch):
    """Real run_desktop twice on a fresh user: the welcome the first time (with the driver
    check of this machine), none the second."""
    from vcam_me.ui import qt_app

    monkeypatch.setattr("vcam_me.output.virtualcam._system", lambda: "Linux")
    shown = []
    real = qt_app.show_first_run
    monkeypatch.setattr(qt_app, "show_first_run", lambda tray, cfg: shown.append(real(tray, cfg)) or shown[-1])
    for _ in range(2):
        QTimer.singleShot(300, qapp.quit)
        assert qt_app.run_desktop(load_config(), start_streaming=False) == 0
    assert isinstance(shown[0], FirstRunDialog) and shown[1] is None
    assert not first_run.is_first_run()
