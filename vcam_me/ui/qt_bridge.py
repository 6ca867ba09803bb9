"""The Qt side of the bridge: pipeline events as Qt signals, emitted on the GUI thread.

:class:`QtBridge` owns a :class:`~vcam_me.ui.bridge.PipelineBridge` (give its ``listener`` to
the live session). A delivery from any thread emits the private ``_wake`` signal; its
connection is queued, so the slot that drains the mailbox runs on the thread this object
lives on (the GUI thread), which re-emits everything as the public signals below.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal, Slot

from vcam_me.ui.bridge import PipelineBridge, StreamStatus


class QtBridge(QObject):
    #: the newest output frame (a :class:`~vcam_me.ui.bridge.FrameReport`)
    frame_ready = Signal(object)
    #: the tray status changed (a :class:`~vcam_me.ui.bridge.StreamStatus`)
    status_changed = Signal(object)
    #: something the user must act on: (title, text)
    notice = Signal(str, str)
    #: a one-line error
    error = Signal(str)

    _wake = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)
        self.listener = PipelineBridge(wake=self._wake.emit)

    @property
    def stream_status(self) -> StreamStatus:
        return self.listener.stream_status

    @Slot()
    def _drain(self) -> None:
        mail = self.listener.take()
        for status in mail.statuses:
            self.status_changed.emit(status)
        for title, text in mail.notices:
            self.notice.emit(title, text)
        for text in mail.errors:
            self.error.emit(text)
        if mail.frame is not None:
            self.frame_ready.emit(mail.frame)
