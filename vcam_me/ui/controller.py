"""What each tray action does to the running stream, in plain Python (no Qt).

The Qt tray (:mod:`vcam_me.ui.qt_tray`) only draws the menu and calls these methods, so the
behaviour can be tested without a display, on a real live session. Every method returns
at once: starting, stopping and switching avatars run on the session's worker threads,
and their outcome comes back through the bridge (:class:`~vcam_me.ui.bridge.PipelineBridge`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from vcam_me.config import AppConfig
from vcam_me.ui.bridge import PipelineBridge, StreamStatus

#: Micro-expression modes shown in the menu, in order, with their labels.
MICRO_MODE_LABELS = {"off": "Off", "hotkeys": "Hotkeys only", "auto": "Automatic"}
#: Automatic micro-expression rates offered in the menu (events per minute).
MICRO_RATES = (1.0, 2.0, 4.0, 8.0, 12.0)
#: Output frame rates offered in the menu.
FRAME_RATES = (30, 60)


def default_micro_mode(cfg: AppConfig) -> str:
    """The menu's starting mode: automatic when the config asks for it, else hotkeys when
    they are on, else off. (A scripted sequence file is for `vcam-me run`, not the tray.)"""
    if cfg.micro.mode == "auto":
        return "auto"
    return "hotkeys" if cfg.hotkeys.enabled else "off"


def _live_session(cfg: AppConfig, listener, **kwargs):
    from vcam_me.app import LiveSession

    return LiveSession(cfg, listener, **kwargs)


def _log_folder() -> Path:
    from vcam_me.app import _log_path

    return _log_path().parent


class TrayController:
    """The tray's state (avatar, micro-expression mode and rate, pause, mirror, frame rate)
    and the live session it steers.

    Args:
        cfg: the validated configuration (``settings_changed`` replaces it).
        bridge: the session's listener; its status drives the tray icon.
        make_session: ``make_session(cfg, listener, avatar=…, fps=…, micro=…, micro_rate=…)`` →
            a :class:`vcam_me.app.LiveSession` (a seam for tests that add their own outputs).
        avatars: returns ``[(name, folder)]`` of the avatars to offer.
        log_folder: returns the folder "Open log folder" opens.
    """

    def __init__(self, cfg: AppConfig, bridge: PipelineBridge, *, make_session: Callable[..., object] = _live_session,
                 avatars: Callable[[], list[tuple[str, Path]]] | None = None,
                 log_folder: Callable[[], Path] = _log_folder) -> None:
        self.cfg = cfg
        self.bridge = bridge
        self._make_session = make_session
        self._avatars = avatars
        self._log_folder = log_folder
        self.session = None
        self.avatar: Path | None = Path(cfg.avatar.path).expanduser() if cfg.avatar.path else None
        self.micro_mode = default_micro_mode(cfg)
        self.micro_rate = float(cfg.micro.rate_per_min)
        self.paused = False
        self.mirror = False
        self.fps = int(cfg.output.fps)

    # -- what the menu shows ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.session is not None and self.session.running

    @property
    def status(self) -> StreamStatus:
        return self.bridge.stream_status

    def avatar_list(self) -> list[tuple[str, Path]]:
        if self._avatars is None:
            from vcam_me.app import avatar_choices

            return avatar_choices()
        return self._avatars()

    def current_avatar_name(self) -> str | None:
        choices = self.avatar_list()
        if self.avatar is None:
            return choices[0][0] if choices else None
        for name, folder in choices:
            if Path(folder).resolve() == Path(self.avatar).resolve():
                return name
        return None

    # -- actions -----------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.session = self._make_session(self.cfg, self.bridge, avatar=self.avatar, fps=self.fps,
                                          micro=self.micro_mode, micro_rate=self.micro_rate)
        self.session.mirror = self.mirror
        self.session.paused = self.paused
        self.session.start()

    def stop(self, wait_s: float | None = None) -> None:
        """Stop streaming; returns at once unless ``wait_s`` (quit waits for the outputs to close)."""
        if self.session is not None:
            self.session.stop(wait_s)

    def toggle_stream(self) -> None:
        self.stop() if self.running else self.start()

    def choose_avatar(self, folder: Path):
        """Show another avatar; live at once when streaming (a Future of its name), else from
        the next start (``None``)."""
        self.avatar = Path(folder)
        if self.running:
            return self.session.switch_avatar(self.avatar)
        return None

    def set_micro_mode(self, mode: str) -> None:
        if mode not in MICRO_MODE_LABELS:
            raise ValueError(f"micro-expression mode {mode!r}: expected one of {', '.join(MICRO_MODE_LABELS)}")
        self.micro_mode = mode
        if self.session is not None:
            self.session.set_micro_mode(mode)

    def set_micro_rate(self, per_min: float) -> None:
        if not 0 <= per_min <= 60:
            raise ValueError(f"micro-expression rate {per_min}: allowed 0..60 per minute")
        self.micro_rate = float(per_min)
        if self.session is not None:
            self.session.set_micro_rate(per_min)

    def set_paused(self, paused: bool) -> None:
        self.paused = bool(paused)
        self.bridge.paused = self.paused
        if self.session is not None:
            self.session.set_paused(self.paused)
        self.bridge.refresh()

    def set_mirror(self, on: bool) -> None:
        self.mirror = bool(on)
        if self.session is not None:
            self.session.set_mirror(self.mirror)

    def set_fps(self, fps: int) -> None:
        """30 or 60 fps. The virtual camera announces its rate when it opens, so a running
        stream is restarted (on a worker thread) at the new rate."""
        if fps not in FRAME_RATES:
            raise ValueError(f"frame rate {fps}: expected 30 or 60")
        if fps == self.fps:
            return
        self.fps = int(fps)
        self._restart_if_running()

    def settings_changed(self, cfg: AppConfig) -> None:
        """New saved settings: take them, and restart a running stream so they apply."""
        self.cfg = cfg
        self.fps = int(cfg.output.fps)
        self._restart_if_running()

    def run_setup(self) -> bool:
        """Before the set-up wizard takes the camera: stop streaming. True when a stream was
        running (the user is told; they start it again from the menu afterwards)."""
        was_running = self.running
        self.stop()
        return was_running

    def log_folder(self) -> Path:
        folder = self._log_folder()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def quit(self) -> None:
        self.stop(wait_s=3.0)

    def _restart_if_running(self) -> None:
        if not self.running:
            return
        old = self.session

        def restart() -> None:
            old.stop(5.0)  # the old stream lets go of the camera and virtual camera first
            self.session = None
            self.start()

        threading.Thread(target=restart, name="vcam-restart", daemon=True).start()
