"""Plain helpers shared by tests in several folders (fixtures live in the conftest files).

Import them relatively, as the rest of the suite imports from its conftest files:
``from .helpers import wait_until`` in ``tests/``, ``from ..helpers import wait_until`` one
folder down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyvirtualcam

from vcam_me.config import AppConfig, load_config

# How long a wait gives up after unless the call says otherwise. It only decides how long a
# failing test hangs before it fails; generous, because the live-session tests share a busy
# 2-core machine with MediaPipe and the avatar.
WAIT_TIMEOUT_S = 30.0


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_TIMEOUT_S, *, poll_s: float = 0.01) -> bool:
    """Poll ``condition`` every ``poll_s`` seconds until it is true (→ True) or ``timeout_s``
    has passed (→ whether it is true at that last look). Meant for ``assert wait_until(...)``
    on work that other threads or processes do."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(poll_s)
    return bool(condition())


class KeepingBackend:
    """A pyvirtualcam test backend (the duck-typed ``pyvirtualcam.Backend`` that
    ``pyvirtualcam.register_backend`` takes), so a test drives pyvirtualcam's real ``Camera``.

    Each device opened is one instance, listed in the class's ``instances``. It keeps every
    frame it is sent as an (H, W, 3) uint8 picture, and in ``sent_at`` the monotonic time each
    came. Register it (or a subclass) with :func:`registered_backend`, which empties the lists.
    """

    instances: ClassVar[list[KeepingBackend]] = []
    lock = threading.Lock()  # devices are opened and fed on the session's threads, read on the test's

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.device_name = device or "test camera"
        self.frames: list[np.ndarray] = []
        self.sent_at: list[float] = []
        self.closed = 0  # how often close() was called
        with KeepingBackend.lock:
            type(self).instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        picture = frame.reshape(self.height, self.width, 3).copy()
        with KeepingBackend.lock:
            self.frames.append(picture)
            self.sent_at.append(time.monotonic())

    def close(self) -> None:
        self.closed += 1

    def device(self) -> str:
        return self.device_name

    def native_fourcc(self) -> None:
        return None

    @classmethod
    def reset(cls) -> None:
        cls.instances = []  # on the subclass itself: tests of different backends never share a list


class FlakyBackend(KeepingBackend):
    """A device that can be busy (opening raises, as the real backends do when another program
    holds the device), vanish (sending raises, as an unplugged device does) and come back, by
    setting the class's ``busy`` and ``present``. ``opened_on`` names the thread of each open."""

    busy = False
    present = True
    opened_on: ClassVar[list[str]] = []

    def __init__(self, **kw):
        if type(self).busy:
            raise RuntimeError("virtual camera output could not be started: device is in use by another program")
        if not type(self).present:
            raise RuntimeError("no such device")
        super().__init__(**kw)
        with KeepingBackend.lock:
            type(self).opened_on.append(threading.current_thread().name)

    def send(self, frame: np.ndarray) -> None:
        if not type(self).present:
            raise OSError(19, "No such device")
        super().send(frame)

    @classmethod
    def reset(cls) -> None:
        super().reset()
        cls.busy, cls.present, cls.opened_on = False, True, []


@contextlib.contextmanager
def registered_backend(name: str, backend: type) -> Iterator[type]:
    """Register ``backend`` with pyvirtualcam under ``name`` for the block (emptied first when
    it is a :class:`KeepingBackend`), and take it away afterwards so no other test sees it."""
    if issubclass(backend, KeepingBackend):
        backend.reset()
    pyvirtualcam.register_backend(name, backend)
    try:
        yield backend
    finally:
        pyvirtualcam.camera.BACKENDS.pop(name, None)


def clip_session_config(clip: Path, **output_changes) -> AppConfig:
    """Settings for a live session in a test: the defaults (never the real user's config),
    ``clip`` looped at its real pace as the camera, the mesh warp alone (the session is under
    test, not the appearance network), 320x180 out at 30 fps (light on a busy 2-core machine),
    and ``output_changes`` on top (e.g. ``virtualcam_backend=``)."""
    cfg = load_config(use_user_config=False)
    return dataclasses.replace(
        cfg,
        avatar=dataclasses.replace(cfg.avatar, appearance="warp"),
        capture=dataclasses.replace(cfg.capture, source=str(clip), loop=True, pace="realtime"),
        output=dataclasses.replace(cfg.output, width=320, height=180, fps=30, **output_changes),
    )


def mirrored_avatar(work: Path, out: Path, *, days: int | None = None) -> Path:
    """A second avatar at ``out`` (the sample photo mirrored, so its frames differ from the
    sample's), made and licensed through the command line as a user would; ``work`` holds the
    photo; ``days``: how long the attested licence lasts (the CLI's default when None)."""
    import cv2

    from vcam_me.app import BUNDLED_AVATAR, main

    photo = work / "portrait.png"
    cv2.imwrite(str(photo), cv2.imread(str(BUNDLED_AVATAR / "reference.png"))[:, ::-1])
    assert main(["avatar", "create", "--photo", str(photo), "--out", str(out)]) == 0
    lasts = [] if days is None else ["--days", str(days)]
    assert main(["consent", "attest", "--avatar", str(out), "--licence", "test", "--name", "Mirror", *lasts]) == 0
    return out
