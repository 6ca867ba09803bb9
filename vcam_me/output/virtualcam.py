"""The virtual camera: frames go to conferencing apps through pyvirtualcam's real ``Camera``.

pyvirtualcam keeps a registry of backends (``pyvirtualcam.register_backend``); which ones
exist depends on the OS. ``OutputOptions.virtualcam_backend = "auto"`` tries this OS's
drivers in order (Windows: OBS, then UnityCapture; macOS: OBS; Linux: v4l2loopback), and
any other value names one registered backend (tests and ``vcam-me bench`` register their
own). When none can be opened the error is one line naming the driver to install.

:func:`virtual_camera_status` answers "is a driver installed?" without opening a device,
for ``vcam-me doctor``.

:class:`RetryingVirtualCamera` keeps a stream alive when the device goes away mid-call
(another app grabbed it, the driver was restarted, OBS's camera was stopped): it drops
frames while the device is gone, says so once through a callback, and reopens it on a
worker thread every ``output.virtualcam_retry_s`` seconds, so the render loop, the capture,
the preview and the recorder never wait for it.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
import threading
from collections.abc import Callable
from pathlib import Path

from vcam_me.config import OutputOptions
from vcam_me.errors import OutputError
from vcam_me.output.base import SinkBase, check_image
from vcam_me.types import RenderedFrame

log = logging.getLogger(__name__)

#: Backends tried for ``virtualcam_backend = "auto"``, per ``platform.system()``.
DEFAULT_BACKENDS: dict[str, tuple[str, ...]] = {
    "Windows": ("obs", "unitycapture"),
    "Darwin": ("obs",),
    "Linux": ("v4l2loopback",),
}

#: What to install, per OS (one line each).
DRIVER_HINTS: dict[str, str] = {
    "Linux": "install and load v4l2loopback: sudo apt install v4l2loopback-dkms && "
             "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=vcam-me",
    "Windows": "install OBS Studio 26 or newer (its Virtual Camera) or UnityCapture "
               "(https://github.com/schellingb/UnityCapture), then try again",
    "Darwin": "install OBS Studio 26.1 or newer and click 'Start Virtual Camera' in it once "
              "(macOS then asks you to allow the camera extension)",
}

# DirectShow filters the Windows drivers register (HKEY_CLASSES_ROOT\CLSID\{...}).
_WINDOWS_CLSIDS = {
    "OBS Virtual Camera": "{A3FCE0F5-3493-419F-958A-ABA1250EC20B}",
    "UnityCapture": "{5C2CD55C-92AD-4999-8666-912BD3E70010}",
}
# OBS's macOS virtual camera: a camera extension (OBS ≥ 30, macOS ≥ 13) or a DAL plug-in (older).
_MACOS_OBS_PATHS = (
    "/Library/SystemExtensions/*/com.obsproject.obs-studio.mac-camera-extension.systemextension",
    "/Library/CoreMediaIO/Plug-Ins/DAL/obs-mac-virtualcam.plugin",
)


def _system() -> str:
    """``platform.system()``, behind a seam so tests can pretend to be another OS."""
    return platform.system()


def driver_hint(system: str | None = None) -> str:
    """One line: what to install for a virtual camera on ``system`` (default: this OS)."""
    system = system or _system()
    return DRIVER_HINTS.get(system, f"no virtual camera driver is known for {system}; use --preview or --record")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _candidate_backends(backend: str, registered: dict) -> list[str]:
    system = _system()
    if backend and backend != "auto":
        if backend not in registered:
            available = ", ".join(sorted(registered)) or "none"
            raise OutputError(
                f"virtual camera backend '{backend}' is not available on {system} (available: {available}); "
                f"set output.virtualcam_backend = \"auto\" or one of those"
            )
        return [backend]
    names = [n for n in DEFAULT_BACKENDS.get(system, ()) if n in registered]
    if not names:
        raise OutputError(f"no virtual camera backend for {system} in pyvirtualcam: {driver_hint(system)}")
    return names


class VirtualCameraSink(SinkBase):
    """Sends RGB frames to a ``pyvirtualcam.Camera`` (no conversion on our side: the
    backend converts to the driver's native format, in native code).

    Build it with :meth:`open`; ``__init__`` takes an already opened camera.
    """

    kind = "virtual camera"

    def __init__(self, camera) -> None:
        super().__init__()
        self._camera = camera
        self.size = (int(camera.width), int(camera.height))

    @classmethod
    def open(
        cls,
        size: tuple[int, int],
        fps: float,
        options: OutputOptions | None = None,
        *,
        backend: str | None = None,
        device: str | None = None,
        hint: bool = True,
    ) -> "VirtualCameraSink":
        """Open the virtual camera for ``size`` = (width, height) frames at ``fps``.

        ``backend``/``device`` override ``options.virtualcam_backend``/``virtualcam_device``.
        Raises :class:`OutputError` (one line, naming the driver to install unless ``hint`` is
        false: a busy device needs no new driver) when no backend can be opened.
        """
        import pyvirtualcam

        options = options or OutputOptions()
        backend = backend if backend is not None else options.virtualcam_backend
        device = device if device is not None else options.virtualcam_device
        width, height = int(size[0]), int(size[1])
        names = _candidate_backends(backend, pyvirtualcam.camera.BACKENDS)
        reasons = []
        for name in names:
            try:
                camera = pyvirtualcam.Camera(
                    width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device or None, backend=name
                )
            except Exception as err:  # the backend's own words go into the one-line message
                text = _one_line(err)  # pyvirtualcam already says "'<name>' backend: ..."
                reasons.append(text if name in text else f"{name}: {text}")
                continue
            log.info("virtual camera: %s backend, device %s, %dx%d @ %s fps", name, camera.device, width, height, fps)
            return cls(camera)
        why = "; ".join(reasons)
        if backend and backend != "auto":
            raise OutputError(f"cannot open the virtual camera ({why})")
        if not hint:
            raise OutputError(f"no virtual camera available ({why})")
        raise OutputError(f"no virtual camera available ({why}): {driver_hint()}")

    @property
    def backend(self) -> str:
        return self._camera.backend

    @property
    def device(self) -> str:
        return self._camera.device

    @property
    def fps(self) -> float:
        return self._camera.fps

    @property
    def frames_sent(self) -> int:
        return self._camera.frames_sent

    def _send(self, frame: RenderedFrame) -> None:
        image = frame.image
        check_image(image, self.size)
        try:
            self._camera.send(image)  # C-contiguous RGB: passed on as a view, no copy
        except (TypeError, ValueError):
            raise
        except Exception as err:
            raise OutputError(f"virtual camera stopped accepting frames: {_one_line(err)}") from err

    def _close(self) -> None:
        self._camera.close()


#: ``on_status(available, message)``: the virtual camera was lost (``False``) or is back
#: (``True``); ``message`` is one line for the user.
StatusCallback = Callable[[bool, str], None]


def _reason(err: BaseException) -> str:
    """The device's own words: the driver error under our wrapper, on one line."""
    return _one_line(err.__cause__ or err) or type(err).__name__


class RetryingVirtualCamera(SinkBase):
    """A virtual camera that outlives its device: while the device is gone or busy, frames
    are dropped (``send`` returns at once) and a worker thread tries to reopen it every
    ``retry_interval_s`` seconds; ``on_status`` hears "lost" once per outage and "back" once
    a reopened device has taken a frame (a device that opens but still refuses frames is
    the same outage, not a flurry of lost/back messages).

    Build it with :meth:`open`. ``__init__`` takes ``open_device``, which opens the real
    device (a :class:`VirtualCameraSink`) or raises :class:`OutputError`, and the camera
    already opened by it, or ``None`` to start without one.
    """

    kind = "virtual camera"

    def __init__(self, open_device: Callable[[], VirtualCameraSink], size: tuple[int, int],
                 retry_interval_s: float, *, camera: VirtualCameraSink | None = None,
                 on_status: StatusCallback | None = None) -> None:
        super().__init__()
        if retry_interval_s <= 0:
            raise ValueError(f"retry interval must be > 0 s, got {retry_interval_s}")
        self.size = (int(size[0]), int(size[1]))
        self.retry_interval_s = float(retry_interval_s)
        self._open_device = open_device
        self._on_status = on_status
        self._camera = camera
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._told_lost = False  # the user was told "lost" and not yet "back"
        #: Frames not delivered because the device was gone / outages so far / reopen attempts.
        self.frames_dropped = 0
        self.outages = 0
        self.reopen_attempts = 0
        #: Why the device is gone (one line), or ``None`` while it is open.
        self.lost_reason: str | None = None

    @classmethod
    def open(cls, size: tuple[int, int], fps: float, options: OutputOptions | None = None, *,
             on_status: StatusCallback | None = None) -> RetryingVirtualCamera:
        """Open the virtual camera as :meth:`VirtualCameraSink.open` does, but start anyway
        (dropping frames and retrying) when the driver is installed and only the device
        cannot be opened now (busy, not there yet).

        Raises :class:`OutputError` when retrying cannot help: the configured backend does
        not exist, or no driver is installed at all (a set-up problem; the message names
        what to install).
        """
        import pyvirtualcam

        options = options or OutputOptions()
        _candidate_backends(options.virtualcam_backend, pyvirtualcam.camera.BACKENDS)

        def open_device() -> VirtualCameraSink:
            # no "install the driver" hint: it is installed, the device is busy or gone
            return VirtualCameraSink.open(size, fps, options, hint=False)

        try:
            camera = open_device()
        except OutputError as err:
            installed, _ = virtual_camera_status(options)
            if not installed:
                if options.virtualcam_backend in ("", "auto"):
                    raise OutputError(f"{err}: {driver_hint()}") from None
                raise
            sink = cls(open_device, size, options.virtualcam_retry_s, on_status=on_status)
            sink._lose(None, err)
            return sink
        return cls(open_device, size, options.virtualcam_retry_s, camera=camera, on_status=on_status)

    @property
    def available(self) -> bool:
        """Whether frames reach a device now."""
        return self._camera is not None

    @property
    def frames_sent(self) -> int:
        """Frames the currently open device took (restarts at 0 after each reopen)."""
        camera = self._camera
        return camera.frames_sent if camera is not None else 0

    def _send(self, frame: RenderedFrame) -> None:
        check_image(frame.image, self.size)  # a wrong frame is a bug, device or not
        camera = self._camera
        if camera is None:
            self.frames_dropped += 1
            return
        try:
            camera.send(frame)
        except OutputError as err:  # the device went away under us
            self.frames_dropped += 1
            self._lose(camera, err)
            return
        if self._told_lost:
            self._told_lost = False
            log.info("virtual camera back after %d attempts", self.reopen_attempts)
            self._report(True, "virtual camera back")

    def _lose(self, camera: VirtualCameraSink | None, err: BaseException) -> None:
        with self._lock:
            if self._camera is not camera or self._closed:
                return
            self._camera = None
            self.lost_reason = _reason(err)
            tell = not self._told_lost
            self._told_lost = True
            # Closing a dead device can block in some drivers: the worker does it.
            self._worker = threading.Thread(target=self._reopen_loop, args=(camera,),
                                            name="vcam-virtualcam-retry", daemon=True)
            self._worker.start()
        if not tell:  # still the same outage: the device reopened but refused frames again
            log.debug("virtual camera refused frames again: %s", self.lost_reason)
            return
        self.outages += 1
        message = f"virtual camera lost: {self.lost_reason}; retrying every {self.retry_interval_s:g} s"
        log.warning(message)
        self._report(False, message)

    def _reopen_loop(self, dead: VirtualCameraSink | None) -> None:
        if dead is not None:
            try:
                dead.close()
            except Exception as err:  # noqa: BLE001 - the device is gone anyway; log and carry on
                log.debug("closing the lost virtual camera: %s", err)
        while not self._stop.wait(self.retry_interval_s):
            self.reopen_attempts += 1
            try:
                camera = self._open_device()
            except OutputError as err:
                log.debug("virtual camera still unavailable: %s", err)
                continue
            with self._lock:
                if self._closed:  # closed while we were opening: give it straight back
                    camera.close()
                    return
                self._camera = camera  # "back" is said once it has taken a frame
                self.lost_reason = None
            return

    def _report(self, available: bool, message: str) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(available, message)
        except Exception:  # a listener's bug must not stop the stream
            log.exception("virtual camera status callback failed")

    def _close(self) -> None:
        self._stop.set()
        worker = self._worker
        if worker is not None:
            # A driver whose open hangs must not hang the app's exit: the worker is a daemon.
            worker.join(timeout=self.retry_interval_s + 5.0)
        with self._lock:
            camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()


# --------------------------------------------------------------------------------------
# availability without opening (for `vcam-me doctor`)
# --------------------------------------------------------------------------------------
def virtual_camera_status(options: OutputOptions | None = None, *, _sysfs: str = "/sys",
                          _dev: str = "/dev") -> tuple[bool, str]:
    """``(ok, message)``: whether a virtual-camera driver looks usable here, without opening it.

    ``message`` is one line: what was found, or what to install. A non-"auto" backend that
    is registered with pyvirtualcam but is not a system driver (a test or benchmark backend)
    is reported as available.
    """
    options = options or OutputOptions()
    system = _system()
    backend = options.virtualcam_backend
    if backend and backend != "auto" and backend not in DEFAULT_BACKENDS.get(system, ()):
        try:
            import pyvirtualcam

            registered = backend in pyvirtualcam.camera.BACKENDS
        except Exception:  # noqa: BLE001 - cannot import: report below
            registered = False
        if registered:
            return True, f"backend '{backend}' is registered with pyvirtualcam (not a system driver)"
        return False, f"virtual camera backend '{backend}' is not available on {system}; set output.virtualcam_backend = \"auto\""
    if system == "Linux":
        return _linux_status(options, Path(_sysfs), Path(_dev))
    if system == "Windows":
        return _windows_status()
    if system == "Darwin":
        return _macos_status()
    return False, driver_hint(system)


def _linux_status(options: OutputOptions, sysfs: Path, dev: Path) -> tuple[bool, str]:
    if not (sysfs / "module" / "v4l2loopback").exists():
        return False, f"v4l2loopback is not loaded; {driver_hint('Linux')}"
    devices = []
    for entry in sorted((sysfs / "devices" / "virtual" / "video4linux").glob("video*")):
        try:
            label = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            label = "?"
        devices.append((str(dev / entry.name), label))
    if not devices:
        return False, ("v4l2loopback is loaded but has no devices; reload it: sudo modprobe -r v4l2loopback && "
                       "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=vcam-me")
    wanted = options.virtualcam_device
    if wanted:
        devices = [d for d in devices if d[0] == wanted]
        if not devices:
            return False, f"{wanted} is not a v4l2loopback device (set output.virtualcam_device = \"\" to pick one)"
    usable = [d for d in devices if os.access(d[0], os.R_OK | os.W_OK)]
    if not usable:
        return False, (f"{', '.join(d[0] for d in devices)}: no permission to write; add yourself to the "
                       f"'video' group (sudo usermod -aG video $USER) and log in again")
    return True, "v4l2loopback: " + ", ".join(f"{path} ({label})" for path, label in usable)


def _windows_status() -> tuple[bool, str]:
    try:
        import winreg
    except ImportError:  # pragma: no cover - only on Windows
        return False, driver_hint("Windows")
    found = []
    for name, clsid in _WINDOWS_CLSIDS.items():
        try:
            winreg.CloseKey(winreg.OpenKey(winreg.HKEY_CLASSES_ROOT, f"CLSID\\{clsid}"))
            found.append(name)
        except OSError:
            pass
    if found:
        return True, f"{' and '.join(found)} installed"
    return False, f"no virtual camera driver registered; {driver_hint('Windows')}"


def _macos_status() -> tuple[bool, str]:
    for pattern in _MACOS_OBS_PATHS:
        hits = glob.glob(pattern)
        if hits:
            return True, f"OBS virtual camera installed ({hits[0]})"
    if Path("/Applications/OBS.app").exists():
        return False, "OBS is installed but its virtual camera was never started: open OBS and click 'Start Virtual Camera' once"
    return False, driver_hint("Darwin")
