"""The welcome window of the first run: offers the set-up wizard and, when no virtual-camera
driver is present, says what to install for this OS and version with a page to open.

A thin Qt layer over :mod:`vcam_me.ui.first_run`; opening a page goes through ``open_url``
(``QDesktopServices.openUrl`` by default) so tests see which page was asked for.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from vcam_me.ui.first_run import DriverAdvice


def _open_url(url: str) -> bool:
    return QDesktopServices.openUrl(QUrl(url))


class FirstRunDialog(QDialog):
    """Welcome. ``advice`` is ``None`` when a virtual-camera driver was found.

    Signals: ``setup_requested`` when the user picks "Set up my avatar". Attributes for tests:
    ``driver_label`` (the advice with its link), ``open_button``, ``setup_button``, ``later_button``.
    """

    setup_requested = Signal()

    def __init__(self, advice: DriverAdvice | None, driver_status: str, *,
                 open_url: Callable[[str], object] = _open_url, parent=None) -> None:
        super().__init__(parent)
        self.advice = advice
        self._open_url = open_url
        self.setWindowTitle("Welcome to vcam-me")
        layout = QVBoxLayout(self)
        intro = QLabel(
            "<b>vcam-me shows your consenting avatar instead of your webcam in video calls.</b><br>"
            "It lives in the tray. You can use the sample avatar right away, or set up your own: "
            "the set-up records you for about a minute and learns your face.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        self.driver_label = QLabel()
        self.driver_label.setWordWrap(True)
        self.driver_label.setTextFormat(Qt.TextFormat.RichText)
        self.open_button = None
        if advice is None:
            self.driver_label.setText(f"Virtual camera: {html.escape(driver_status)}")
        else:
            steps = "".join(f"<li>{html.escape(step)}</li>" for step in advice.steps)
            self.driver_label.setText(
                f"<b>No virtual camera driver found</b> ({html.escape(advice.version)}).<br>"
                f"{html.escape(advice.what)}:<ol>{steps}</ol>"
                f'<a href="{html.escape(advice.url)}">{html.escape(advice.url)}</a>')
            # A click on the link goes through the same opener as the button.
            self.driver_label.setOpenExternalLinks(False)
            self.driver_label.linkActivated.connect(self.open_driver_page)
            self.open_button = QPushButton(advice.url_label)
            self.open_button.clicked.connect(lambda: self.open_driver_page(advice.url))
        layout.addWidget(self.driver_label)

        buttons = QHBoxLayout()
        if self.open_button is not None:
            buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        self.setup_button = QPushButton("Set up my avatar…")
        self.setup_button.clicked.connect(self._setup)
        self.later_button = QPushButton("Later")
        self.later_button.clicked.connect(self.accept)
        buttons.addWidget(self.later_button)
        buttons.addWidget(self.setup_button)
        layout.addLayout(buttons)

    def open_driver_page(self, url: str | None = None) -> None:
        if self.advice is not None:
            self._open_url(url or self.advice.url)

    def _setup(self) -> None:
        self.setup_requested.emit()
        self.accept()
