"""The tray icon and its menu: a thin Qt layer over :class:`~vcam_me.ui.controller.TrayController`.

Every menu action calls one controller method; the icon, the status line and the
notifications follow the bridge's signals. Where the desktop has no system tray (some
GNOME set-ups, a bare X server), the same menu hangs from a button on the preview window,
which is then shown at start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices
from PySide6.QtWidgets import (
    QApplication,
    QMenu,
    QPushButton,
    QSystemTrayIcon,
)

from vcam_me.ui.bridge import StreamStatus
from vcam_me.ui.controller import (
    FRAME_RATES,
    MICRO_MODE_LABELS,
    MICRO_RATES,
    TrayController,
)
from vcam_me.ui.qt_bridge import QtBridge
from vcam_me.ui.qt_icons import STATUS_STYLE, status_icon
from vcam_me.ui.qt_preview import PreviewWindow

log = logging.getLogger(__name__)


def _open_folder(path: Path) -> None:
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


class TrayApp(QObject):
    """Owns the tray icon, its menu, the preview window and the settings dialog.

    ``actions`` names every menu action (``"start_stop"``, ``"pause"``, ``"mirror"``,
    ``"preview"``, ``"settings"``, ``"setup"``, ``"log_folder"``, ``"quit"``,
    ``"fps:30"``, ``"micro:auto"``, ``"rate:4"``, ``"avatar:NAME"`` …) so tests and
    accessibility tools can reach them; ``notifications`` keeps every (title, text) shown.
    """

    def __init__(self, controller: TrayController, bridge: QtBridge, *,
                 open_folder: Callable[[Path], None] = _open_folder, use_tray: bool | None = None,
                 on_quit: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.bridge = bridge
        self._open_folder = open_folder
        self._on_quit = on_quit or QApplication.quit
        self.actions: dict[str, QAction] = {}
        self.notifications: list[tuple[str, str]] = []
        self.settings_dialog = None
        self.wizard = None  # the set-up wizard, while open
        self.pending_switch = None
        self.preview = PreviewWindow()
        self.menu = QMenu()
        self.tray = QSystemTrayIcon(status_icon(StreamStatus.STOPPED))
        self._build_menu()
        self.menu.aboutToShow.connect(self._refresh_menu)
        self.tray.setContextMenu(self.menu)
        self.use_tray = QSystemTrayIcon.isSystemTrayAvailable() if use_tray is None else use_tray
        if not self.use_tray:
            button = QPushButton("vcam-me ▾", self.preview)
            button.setMenu(self.menu)
            self.preview.layout().addWidget(button)
            self.menu_button = button
        bridge.frame_ready.connect(self.preview.show_report)
        bridge.status_changed.connect(self._on_status)
        bridge.notice.connect(self.notify)
        bridge.error.connect(self._on_error)
        self._on_status(bridge.stream_status)

    def show(self) -> None:
        if self.use_tray:
            self.tray.show()
        else:
            self.preview.show()

    # -- the menu ------------------------------------------------------------------------------
    def _add(self, menu: QMenu, key: str, text: str, slot, *, checkable=False, group: QActionGroup | None = None):
        action = QAction(text, menu)
        action.setCheckable(checkable)
        if group is not None:
            group.addAction(action)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.actions[key] = action
        return action

    def _build_menu(self) -> None:
        c, m = self.controller, self.menu
        self.status_line = m.addAction("")
        self.status_line.setEnabled(False)
        m.addSeparator()
        self._add(m, "start_stop", "Start", lambda: (c.toggle_stream(), self._refresh_menu()))
        self.avatar_menu = m.addMenu("Avatar")
        self.avatar_group = QActionGroup(self.avatar_menu)
        micro = m.addMenu("Micro-expressions")
        group = QActionGroup(micro)
        for mode, label in MICRO_MODE_LABELS.items():
            self._add(micro, f"micro:{mode}", label, lambda _=False, mode=mode: c.set_micro_mode(mode),
                      checkable=True, group=group)
        micro.addSeparator()
        rates = micro.addMenu("Automatic rate")
        group = QActionGroup(rates)
        for rate in MICRO_RATES:
            self._add(rates, f"rate:{rate:g}", f"{rate:g} per minute", lambda _=False, rate=rate: c.set_micro_rate(rate),
                      checkable=True, group=group)
        self._add(m, "pause", "Pause to idle", lambda on: c.set_paused(on), checkable=True)
        self._add(m, "mirror", "Mirror", lambda on: c.set_mirror(on), checkable=True)
        fps = m.addMenu("Frame rate")
        group = QActionGroup(fps)
        for rate in FRAME_RATES:
            self._add(fps, f"fps:{rate}", f"{rate} fps", lambda _=False, rate=rate: c.set_fps(rate),
                      checkable=True, group=group)
        m.addSeparator()
        self._add(m, "preview", "Open preview", self.open_preview)
        self._add(m, "settings", "Settings…", self.open_settings)
        self._add(m, "setup", "Run setup (personalise your avatar)…", self.run_setup)
        self._add(m, "log_folder", "Open log folder", lambda: self._open_folder(c.log_folder()))
        m.addSeparator()
        self._add(m, "quit", "Quit", self.quit)
        self._refresh_menu()

    @Slot()
    def _refresh_menu(self) -> None:
        """Bring checks, labels and the avatar list in line with the controller."""
        c = self.controller
        self.actions["start_stop"].setText("Stop" if c.running else "Start")
        self.actions[f"micro:{c.micro_mode}"].setChecked(True)
        rate_key = f"rate:{c.micro_rate:g}"
        if rate_key in self.actions:
            self.actions[rate_key].setChecked(True)
        self.actions["pause"].setChecked(c.paused)
        self.actions["mirror"].setChecked(c.mirror)
        self.actions[f"fps:{c.fps}"].setChecked(True)
        for key in [k for k in self.actions if k.startswith("avatar:")]:
            action = self.actions.pop(key)
            self.avatar_group.removeAction(action)
            self.avatar_menu.removeAction(action)
        current = c.current_avatar_name()
        for name, folder in c.avatar_list():
            action = self._add(self.avatar_menu, f"avatar:{name}", name,
                               lambda _=False, folder=folder: self.choose_avatar(folder),
                               checkable=True, group=self.avatar_group)
            action.setChecked(name == current)
        self._show_status(self.bridge.stream_status)

    def choose_avatar(self, folder: Path) -> None:
        #: the switch under way (a Future of the avatar's name), or None when not streaming
        self.pending_switch = self.controller.choose_avatar(folder)

    def _show_status(self, status: StreamStatus) -> None:
        _, words = STATUS_STYLE[status]
        c = self.controller
        text = f"vcam-me: {words} · {c.current_avatar_name() or 'avatar'} · {c.fps} fps"
        self.status_line.setText(text)
        self.tray.setToolTip(text)

    # -- what the bridge says ------------------------------------------------------------------
    @Slot(object)
    def _on_status(self, status: StreamStatus) -> None:
        self.tray.setIcon(status_icon(status))
        self.preview.setWindowIcon(status_icon(status))
        self._show_status(status)
        self.actions["start_stop"].setText("Stop" if status not in (StreamStatus.STOPPED, StreamStatus.ERROR) else "Start")

    @Slot(str, str)
    def notify(self, title: str, text: str) -> None:
        self.notifications.append((title, text))
        log.warning("%s: %s", title, text)
        if self.use_tray and self.tray.isVisible():
            self.tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning, 10_000)
        else:  # no tray: the preview window (shown at start) carries the latest notice
            self.preview.show_message(f"{title}: {text}")

    @Slot(str)
    def _on_error(self, text: str) -> None:
        self.notify("vcam-me", text)

    # -- windows -------------------------------------------------------------------------------
    def open_preview(self) -> None:
        self.preview.show()
        self.preview.raise_()

    def open_settings(self) -> None:
        from vcam_me.ui.qt_settings import SettingsDialog

        dialog = SettingsDialog(self.controller.cfg)
        dialog.saved.connect(self._settings_saved)
        dialog.show()
        self.settings_dialog = dialog

    @Slot(object, object)
    def _settings_saved(self, cfg, kept) -> None:
        self.controller.settings_changed(cfg)
        self._refresh_menu()
        if kept is not None:
            self.notify("Settings saved", f"Your previous config file was kept as {kept}")

    def run_setup(self) -> None:
        """Open the personalisation wizard (one at a time); a saved avatar joins the menu."""
        from vcam_me.ui.qt_wizard import SetupWizard, default_sources

        if self.wizard is not None and self.wizard.isVisible():
            self.wizard.raise_()
            self.wizard.activateWindow()
            return
        if self.controller.run_setup():
            self.notify("Streaming stopped", "The set-up needs your camera; start streaming again from this menu "
                        "when it is done.")
        self.wizard = SetupWizard(self.controller.cfg, sources=default_sources(self.controller.cfg))
        self.wizard.finished.connect(lambda _result: self._refresh_menu())
        self.wizard.show()

    def quit(self) -> None:
        self.controller.quit()
        self.tray.hide()
        self.preview.close()
        self._on_quit()
