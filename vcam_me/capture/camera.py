"""A webcam through OpenCV: its own thread, newest frame only, automatic reconnect.

Build it with :meth:`CameraSource.open`, which does the I/O (opens the device, asks for the
configured size and rate, reads back what the device gave, takes the first frame). The
OpenCV constructor is a parameter (``capture_factory``), so tests can hand in a fake device
that fails or disappears.

When the camera stops delivering (unplugged, taken by another app), the thread releases it
and tries to reopen it every ``reconnect_interval_s``; :attr:`CameraSource.reconnect_count`
goes up and ``on_reconnect`` is called after each successful reconnect, so the app can show
the start banner again.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from vcam_me.capture.base import LiveSource, first_line
from vcam_me.clock import now_ms
from vcam_me.config import CaptureOptions
from vcam_me.errors import CaptureError

log = logging.getLogger(__name__)

#: Consecutive failed reads after which the camera counts as gone.
FAILED_READS_BEFORE_RECONNECT = 5
#: Indices probed to list the cameras that do exist (for the error message).
PROBE_INDICES = range(0, 6)
#: A camera that sends byte-identical pictures this long is frozen (a real sensor always
#: has noise): its repeats are not passed on, so the avatar idles instead of staring.
FROZEN_AFTER_S = 1.0
#: A camera frozen this long is reopened once (a hung driver often recovers that way).
FROZEN_REOPEN_AFTER_S = 5.0
#: Mean grey level below which a picture counts as black (lens cover, privacy shutter).
DARK_LEVEL = 8.0
#: Sparse grid step (pixels) of the signature used to spot frozen and black pictures.
_SIGNATURE_STEP = 16


class VideoCaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the camera source uses (a fake implements this)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def set(self, prop_id: int, value: float) -> bool: ...
    def get(self, prop_id: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[int], VideoCaptureLike]


def _cv2():
    import cv2

    return cv2


def default_capture_factory(index: int) -> VideoCaptureLike:
    """``cv2.VideoCapture(index)`` with the platform's preferred camera backend."""
    cv2 = _cv2()
    if sys.platform == "win32":
        return cv2.VideoCapture(index, cv2.CAP_DSHOW)
    if sys.platform == "darwin":
        return cv2.VideoCapture(index, cv2.CAP_AVFOUNDATION)
    if sys.platform.startswith("linux"):
        return cv2.VideoCapture(index, cv2.CAP_V4L2)
    return cv2.VideoCapture(index)


def find_cameras(capture_factory: CaptureFactory | None = None, indices=PROBE_INDICES,
                 skip: tuple[int, ...] = ()) -> list[int]:
    """Indices in ``indices`` where ``capture_factory`` opens a device (probes each briefly)."""
    factory = capture_factory or default_capture_factory
    found = []
    for index in indices:
        if index in skip:
            continue
        try:
            cap = factory(index)
        except Exception:
            continue
        try:
            if cap.isOpened():
                found.append(index)
        finally:
            try:
                cap.release()
            except Exception:
                pass
    return found


@dataclass(frozen=True)
class CameraInfo:
    """A camera that is there now, as a person would choose it.

    Attributes:
        index: what ``capture.camera_index`` takes (Linux: the N of ``/dev/videoN``).
        name: the driver's name for it ("Camera N" where the platform gives none).
        is_virtual: a virtual camera (v4l2loopback), such as vcam-me's own output: taking it
            as the input would feed the avatar back into itself.
    """

    index: int
    name: str
    is_virtual: bool = False


def list_cameras(capture_factory: CaptureFactory | None = None, *, _sysfs: str = "/sys",
                 _platform: str | None = None) -> list[CameraInfo]:
    """The cameras that are there now, in index order (may take a second: call it off the GUI thread).

    On Linux, read from sysfs without opening anything (a camera busy in a call is still
    listed): one entry per capture node; a UVC camera's second (metadata) node is left out.
    Elsewhere, or where sysfs is not mounted, each index in :data:`PROBE_INDICES` is opened
    briefly with ``capture_factory`` and the ones that open are named "Camera N".
    """
    platform = _platform if _platform is not None else sys.platform
    sysfs = Path(_sysfs)
    if platform.startswith("linux") and (sysfs / "class").is_dir():
        return _sysfs_cameras(sysfs)
    return [CameraInfo(index, f"Camera {index}") for index in find_cameras(capture_factory)]


def _sysfs_cameras(sysfs: Path) -> list[CameraInfo]:
    cameras = []
    for node in (sysfs / "class" / "video4linux").glob("video*"):
        number = node.name[len("video"):]
        if not number.isdigit():
            continue
        # a device's nodes are numbered from 0; only node 0 gives pictures (UVC: 1 = metadata)
        if _sysfs_text(node / "index") not in ("", "0"):
            continue
        is_virtual = _under(node, sysfs / "devices" / "virtual")
        index = int(number)
        cameras.append(CameraInfo(index, _sysfs_text(node / "name") or f"Camera {index}", is_virtual))
    return sorted(cameras, key=lambda camera: camera.index)


def _under(link: Path, folder: Path) -> bool:
    """Whether the sysfs entry ``link`` (a symlink into /sys/devices) lies in ``folder``."""
    try:
        link.resolve().relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
    return True


def _sysfs_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class CameraFormat:
    """What was asked of the camera and what it actually gives."""

    requested_size: tuple[int, int]
    requested_fps: float
    size: tuple[int, int]
    #: As reported by the driver; 0.0 when it does not say.
    fps: float


def _to_rgb(image: Any) -> np.ndarray:
    """OpenCV's BGR (or grey/BGRA) image → contiguous ``(H, W, 3) uint8 RGB``."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise CaptureError(f"camera gave {arr.dtype} pixels, expected uint8")
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr[:, :, ::-1])
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.ascontiguousarray(arr[:, :, 2::-1])
    raise CaptureError(f"camera gave an image of shape {arr.shape}, expected (H, W, 3)")


class CameraSource(LiveSource):
    """A webcam. Live interface: :meth:`wait_newer`, :meth:`latest` (see :mod:`.base`).

    Attributes:
        index: the camera index.
        format: requested vs actual size and rate (:class:`CameraFormat`).
        reconnect_count, reconnects: how many times the camera came back after disappearing.
        connected: whether the camera currently delivers frames.
        frozen: whether it keeps sending the same picture (those repeats are not published).
        dark: whether its pictures are black (lens cover, privacy shutter); they are
            published, the tracker simply finds no face.
    """

    kind = "camera"

    def __init__(self, capture: VideoCaptureLike | None, index: int, capture_factory: CaptureFactory,
                 options: CaptureOptions, fmt: CameraFormat, first_image: np.ndarray | None = None,
                 on_reconnect: Callable[[int], None] | None = None, fourcc: str | None = "MJPG") -> None:
        super().__init__()
        self._capture: VideoCaptureLike | None = capture
        self._capture_lock = threading.Lock()
        self._factory = capture_factory
        self._options = options
        self.index = index
        self.format = fmt
        self.on_reconnect = on_reconnect
        self.connected = True
        #: Why a source opened with ``wait=True`` started without its camera ("" otherwise).
        self.waiting_reason = ""
        self.dropped_non_monotonic = 0
        self.frozen = False
        self.dark = False
        #: Pictures not published because they repeated the previous one exactly.
        self.dropped_repeats = 0
        #: Times the picture size changed while streaming.
        self.size_changes = 0
        self._signature: bytes | None = None
        self._same_since: float | None = None
        self._reopened_for_freeze = False
        self._fourcc = fourcc
        self._reconnected = threading.Event()
        if first_image is not None:
            self._publish(self._make_frame(first_image))

    # -- factory ---------------------------------------------------------------------------
    @classmethod
    def open(cls, options: CaptureOptions | None = None, *, capture_factory: CaptureFactory | None = None,
             on_reconnect: Callable[[int], None] | None = None, start: bool = True,
             fourcc: str | None = "MJPG", wait: bool = False) -> "CameraSource":
        """Open camera ``options.camera_index``, ask for its size and rate, start its thread.

        ``fourcc`` is the pixel format asked for first: most USB webcams give 720p at 30 fps
        only as MJPG (raw YUYV is limited by USB bandwidth); a camera without it ignores the
        request. ``None`` leaves the driver's choice. ``on_reconnect(count)`` is called on
        the camera thread after each reconnect.

        ``wait=True`` (the desktop app): a camera that is missing or taken by another app is
        not an error; the source starts disconnected (``connected`` False, ``waiting_reason``
        says why) and its thread keeps trying to open it, so the stream can start idle and
        pick the camera up when it comes.

        Raises:
            CaptureError: no camera at that index (the message lists the ones found), or it
                opened but gave no frame.
        """
        options = options or CaptureOptions()
        factory = capture_factory or default_capture_factory
        if wait:
            try:
                return cls.open(options, capture_factory=factory, on_reconnect=on_reconnect, start=start, fourcc=fourcc)
            except CaptureError as err:
                log.warning("%s; waiting for it", err)
                requested = (options.width, options.height)
                fmt = CameraFormat(requested, float(options.fps), requested, 0.0)
                source = cls(None, options.camera_index, factory, options, fmt, None, on_reconnect, fourcc)
                source.connected = False
                source.waiting_reason = str(err)
                if start:
                    source.start()
                return source
        index = options.camera_index
        try:
            cap = factory(index)
            opened = cap.isOpened()
        except Exception as err:
            raise CaptureError(f"cannot open camera {index}: {first_line(err)}") from None
        if not opened:
            _safe_release(cap)
            found = find_cameras(factory, skip=(index,))
            listed = ", ".join(map(str, found)) if found else "none"
            raise CaptureError(f"no camera at index {index} (found: {listed})")
        fmt = _configure(cap, options, fourcc)
        ok, image = _read(cap)
        if not ok:
            _safe_release(cap)
            raise CaptureError(f"camera {index} opened but gave no frame (is another app using it?)")
        try:
            rgb = _to_rgb(image)
        except CaptureError:
            _safe_release(cap)
            raise
        actual = (int(rgb.shape[1]), int(rgb.shape[0]))
        if actual != fmt.size:
            fmt = CameraFormat(fmt.requested_size, fmt.requested_fps, actual, fmt.fps)
        log.info("camera %d: asked %dx%d @ %g fps, got %dx%d @ %s fps", index, *fmt.requested_size,
                 fmt.requested_fps, *fmt.size, f"{fmt.fps:g}" if fmt.fps > 0 else "unknown")
        source = cls(cap, index, factory, options, fmt, rgb, on_reconnect, fourcc)
        if start:
            source.start()
        return source

    # -- properties ------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` the camera actually gives."""
        return self.format.size

    @property
    def fps(self) -> float:
        """The rate the driver reports (or the requested one when it reports none)."""
        return self.format.fps if self.format.fps > 0 else float(self.format.requested_fps)

    def wait_reconnected(self, timeout_s: float | None = None) -> bool:
        """Block until the next reconnect (or ``timeout_s``); True if one happened. Clears the flag."""
        happened = self._reconnected.wait(timeout_s)
        self._reconnected.clear()
        return happened

    # -- producer thread -------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            cap = self._capture
            if cap is None:
                if not self._reconnect():
                    continue
                failures = 0
                continue
            ok, image = _read(cap)
            if ok:
                failures = 0
                try:
                    rgb = _to_rgb(image)
                except CaptureError as err:
                    log.debug("camera %d: dropping frame: %s", self.index, err)
                    continue
                self._publish_camera_frame(rgb)
                continue
            failures += 1
            if failures >= FAILED_READS_BEFORE_RECONNECT:
                log.warning("camera %d stopped delivering frames; retrying every %.1f s",
                            self.index, self._options.reconnect_interval_s)
                self.connected = False
                self._drop_capture()
            else:
                self._stop.wait(0.01)

    def _publish_camera_frame(self, rgb: np.ndarray) -> None:
        if not self._check_picture(rgb):
            return
        ts = now_ms()
        if ts <= self._last_ts:  # two frames within one ms: a buffered frame, not a new one
            self.dropped_non_monotonic += 1
            log.debug("camera %d: dropping frame with non-increasing timestamp %d <= %d",
                      self.index, ts, self._last_ts)
            return
        self._last_ts = ts
        self._publish(self._make_frame(rgb, ts))

    def _check_picture(self, rgb: np.ndarray) -> bool:
        """Watch for frozen and black pictures and size changes; False: do not publish this one.

        The signature is a sparse grid of pixels (about 3.6k values at 720p), cheap enough for
        every frame. Equal signatures mean the same picture: a real sensor never repeats one.
        """
        sample = rgb[::_SIGNATURE_STEP, ::_SIGNATURE_STEP]
        signature = sample.tobytes()
        now = time.monotonic()
        self.dark = float(sample.mean()) < DARK_LEVEL
        size = (int(rgb.shape[1]), int(rgb.shape[0]))
        if size != self.format.size:
            self.size_changes += 1
            log.warning("camera %d: picture size changed %dx%d -> %dx%d", self.index, *self.format.size, *size)
            self.format = CameraFormat(self.format.requested_size, self.format.requested_fps, size, self.format.fps)
        if signature != self._signature or self.dark:
            # black pictures repeat exactly too; they are passed on so the tracker says "no face"
            if self.frozen:
                log.warning("camera %d: the picture moves again", self.index)
            self._signature, self._same_since = signature, now
            self.frozen = False
            self._reopened_for_freeze = False
            return True
        held = now - (self._same_since or now)
        if held >= FROZEN_AFTER_S and not self.frozen:
            self.frozen = True
            log.warning("camera %d: the picture has not changed for %.1f s (frozen driver?)", self.index, held)
        if held >= FROZEN_REOPEN_AFTER_S and not self._reopened_for_freeze:
            self._reopened_for_freeze = True  # once per freeze: a still source would loop forever
            log.warning("camera %d: reopening the frozen camera", self.index)
            self._drop_capture()
        if not self.frozen:
            return True  # until it counts as frozen a repeat is passed on (drivers resend a frame)
        self.dropped_repeats += 1
        return False

    def _reconnect(self) -> bool:
        if self._stop.wait(self._options.reconnect_interval_s):
            return False
        try:
            cap = self._factory(self.index)
            opened = cap.isOpened()
        except Exception as err:
            log.debug("camera %d: reopen failed: %s", self.index, first_line(err))
            return False
        if not opened:
            _safe_release(cap)
            return False
        try:
            _configure(cap, self._options, self._fourcc)
        except Exception as err:
            log.debug("camera %d: configuring failed after reopen: %s", self.index, first_line(err))
        ok, image = _read(cap)
        if not ok:
            _safe_release(cap)
            return False
        with self._capture_lock:
            if self._stop.is_set():
                _safe_release(cap)
                return False
            self._capture = cap
        self.connected = True
        self.reconnect_count += 1
        log.warning("camera %d is back (reconnect #%d)", self.index, self.reconnect_count)
        try:
            rgb = _to_rgb(image)
            self._publish_camera_frame(rgb)
        except CaptureError:
            pass
        self._reconnected.set()
        if self.on_reconnect is not None:
            try:
                self.on_reconnect(self.reconnect_count)
            except Exception:  # a listener's bug must not stop the camera thread
                log.exception("camera reconnect listener failed")
        return True

    def _drop_capture(self) -> None:
        with self._capture_lock:
            cap, self._capture = self._capture, None
        if cap is not None:
            _safe_release(cap)

    def _release(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return  # still blocked in read(): it releases the device itself when it stops
        self._drop_capture()

    def _thread_main(self) -> None:
        try:
            super()._thread_main()
        finally:
            if self._stop.is_set():
                self._drop_capture()


def _configure(cap: VideoCaptureLike, options: CaptureOptions, fourcc: str | None = None) -> CameraFormat:
    cv2 = _cv2()
    if fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, options.width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, options.height)
    cap.set(cv2.CAP_PROP_FPS, options.fps)
    try:
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's own queue, where supported
    except Exception:
        pass
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return CameraFormat((options.width, options.height), float(options.fps), (width, height), fps)


def _read(cap: VideoCaptureLike) -> tuple[bool, Any]:
    try:
        ok, image = cap.read()
    except Exception as err:
        log.debug("camera read raised: %s", first_line(err))
        return False, None
    return bool(ok) and image is not None, image


def _safe_release(cap: VideoCaptureLike) -> None:
    try:
        cap.release()
    except Exception:
        log.debug("camera release failed", exc_info=True)
