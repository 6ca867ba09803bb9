"""Choosing the camera from the cameras that are there, by name.

Looking for cameras may open devices and take a second, so :class:`CameraChooser` runs the
lister on a plain thread and polls for its answer with a timer: the window shows at once,
with "Looking for cameras…", and fills the list when the answer comes. The settings dialog
and the set-up wizard's camera page both use it.

Virtual cameras (v4l2loopback) are never offered: vcam-me's own output is one, and taking it
as the input would feed the avatar back into itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from vcam_me.capture import CameraInfo

LOOKING = "Looking for cameras…"
NONE_FOUND = "No camera found: plug one in, or drive the avatar from a video file"
#: How often the GUI thread looks whether the search has answered.
POLL_MS = 50

CameraLister = Callable[[], Sequence[CameraInfo]]


def system_cameras() -> list[CameraInfo]:
    """The real lister (:func:`vcam_me.capture.list_cameras`)."""
    from vcam_me.capture import list_cameras

    return list_cameras()


def camera_label(camera: CameraInfo) -> str:
    """What the list shows: the name, and the number that tells two equal cameras apart."""
    return f"{camera.name} (camera {camera.index})"


def missing_label(index: int) -> str:
    return f"Camera {index} (not found now)"


class CameraChooser(QWidget):
    """A list of the sources in ``sources`` followed by the cameras found, a "Search again"
    button and a line saying what the search found.

    Each camera's item holds ``camera_data(index)``; each source's item its own data.
    ``wanted_index`` (the configured camera) is selected when found; with ``keep_missing``
    it is listed as "Camera N (not found now)" when not, so that saving never changes a
    setting silently. Emits ``chosen(data)`` when the selection changes, by the user or
    because the list was filled (``None`` while nothing can be chosen yet).
    """

    chosen = Signal(object)

    def __init__(self, wanted_index: int, *, lister: CameraLister | None = None,
                 sources: Sequence[tuple[str, Hashable]] = (), camera_data: Callable[[int], Hashable] = int,
                 keep_missing: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lister = lister or system_cameras
        self._sources = list(sources)
        self._camera_data = camera_data
        self._keep_missing = keep_missing
        self.wanted_index = int(wanted_index)
        #: The cameras of the last answer, virtual ones included (None before the first one).
        self.cameras: list[CameraInfo] | None = None
        self._answer: tuple[list[CameraInfo], str] | None = None
        self._thread: threading.Thread | None = None

        self.combo = QComboBox(self)
        self.again = QPushButton("Search again", self)
        self.again.clicked.connect(self.search)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.again)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.combo.currentIndexChanged.connect(lambda _i: self.chosen.emit(self.current()))
        self._fill(None)
        self.search()

    # -- what is chosen -----------------------------------------------------------------------
    def current(self) -> Hashable | None:
        """The data of the selected item (None while the list only says it is looking)."""
        return self.combo.currentData()

    def camera_index(self) -> int:
        """The chosen camera's index; the configured one while nothing else was chosen."""
        data = self.current()
        for camera in self._offered():
            if self._camera_data(camera.index) == data:
                return camera.index
        return self.wanted_index

    def searching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the search ---------------------------------------------------------------------------
    def search(self) -> None:
        """Look for cameras again, on a plain thread (does nothing while a search runs)."""
        if self.searching():
            return
        chosen = self.camera_index()
        if self.cameras is not None and self.current() == self._camera_data(chosen):
            self.wanted_index = chosen  # keep what the user picked across a new search
        self._answer = None
        self.again.setEnabled(False)
        self.status.setText(LOOKING)
        self._thread = threading.Thread(target=self._look, name="vcam-camera-search", daemon=True)
        self._thread.start()
        self._timer.start()

    def _look(self) -> None:
        # runs on the search thread: only a plain attribute is written, the GUI thread reads it
        try:
            answer = (list(self._lister()), "")
        except Exception as err:  # noqa: BLE001 - a driver's failure is shown in the dialog, not raised
            answer = ([], (str(err).strip().splitlines() or [type(err).__name__])[0])
        self._answer = answer

    def _poll(self) -> None:
        answer = self._answer
        if answer is None:
            return
        self._timer.stop()
        self._answer = None
        self.again.setEnabled(True)
        cameras, problem = answer
        self.cameras = cameras
        self._fill(cameras)
        if problem:
            self.status.setText(f"Could not look for cameras: {problem}")
        elif not self._offered():
            self.status.setText(NONE_FOUND)
        else:
            found = len(self._offered())
            self.status.setText(f"{found} camera{'s' if found != 1 else ''} found")

    def _offered(self) -> list[CameraInfo]:
        return [camera for camera in self.cameras or () if not camera.is_virtual]

    def _fill(self, cameras: list[CameraInfo] | None) -> None:
        before = self.current()
        self.combo.blockSignals(True)
        self.combo.clear()
        for label, data in self._sources:
            self.combo.addItem(label, data)
        found = [camera for camera in cameras or () if not camera.is_virtual]
        for camera in found:
            self.combo.addItem(camera_label(camera), self._camera_data(camera.index))
        wanted = self._camera_data(self.wanted_index)
        if cameras is None:
            if not self._sources:
                self.combo.addItem(LOOKING, None)
        elif self._keep_missing and all(camera.index != self.wanted_index for camera in found):
            self.combo.addItem(missing_label(self.wanted_index), wanted)
        position = self.combo.findData(before) if before is not None else -1
        if position < 0:
            position = self.combo.findData(wanted)
        if position < 0:
            position = len(self._sources) if found else 0
        self.combo.setCurrentIndex(min(position, self.combo.count() - 1))
        self.combo.blockSignals(False)
        if self.current() != before:
            self.chosen.emit(self.current())
