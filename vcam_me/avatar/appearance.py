"""The appearance network at run time: what a mesh warp cannot draw, added on top of it.

The transfer network's appearance head (trained by ``vcam_me.training``, exported to ONNX)
takes the warped avatar's aligned face crop (:mod:`vcam_me.avatar.crop`) and the
conditioning (driving AUs, gaze, head pose) and returns an RGB residual and a soft mask in
crop space. :class:`NeuralAvatarRenderer` wraps the mesh-warp renderer:

- every output frame, the warp is drawn, the crop transform is taken from the posed mesh, and
  the newest ``mask · residual`` is mapped back into the frame by that transform and added.
  Because the residual lives in the face's own (aligned) frame, a residual a few
  milliseconds old still sits on the face as the head moves;
- the network itself runs either inline (``asynchronous=False``: offline renders and
  evaluation, every frame, deterministic) or on its own thread (live: at most one call per
  ``min_interval_ms``: the ``[avatar] appearance_interval_ms`` setting, 60 ms by default, so
  at most 15 calls/s, half a 30 fps camera's rate, to save CPU, and none while the face
  holds still (:data:`STILL_CONDITION`); never blocking the 60 fps loop) — design.md §4.

:func:`open_session` creates the ONNX Runtime session and reports the provider that really
runs: onnxruntime-gpu falls back to the CPU silently when CUDA cannot start, so the
provider is read back from the session, never assumed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vcam_me.avatar.basis import state_features
from vcam_me.avatar.crop import CROP_SIZE, POSE_UNIT_DEG, similarity_transform
from vcam_me.errors import ModelError
from vcam_me.types import ExpressionState

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: Live, a condition that moved less than this in every feature (AU range, gaze, pose units)
#: since the last network call reuses that call's residual: 2 % of an AU's range, well under
#: what shows (on the expressive liveportrait_d8 it skips one call in five).
STILL_CONDITION = 0.02


def condition_of(state: ExpressionState) -> np.ndarray:
    """``(1, n_condition) float32``: the features the network was trained on (driving AUs and
    gaze as the crosswalk gives them, then yaw, pitch, roll in units of :data:`POSE_UNIT_DEG`)."""
    pose = np.asarray(state.head_pose, np.float32) / POSE_UNIT_DEG
    return np.concatenate([state_features(state), pose])[None].astype(np.float32)


def preload_cuda_libraries(ort) -> None:
    """Load the CUDA and cuDNN libraries that pip put beside onnxruntime-gpu (the ``nvidia-*``
    wheels of ``onnxruntime-gpu[cuda,cudnn]``), once per process.

    The CUDA provider looks for them only on the system's library path, so a GPU install made
    by pip alone fell back to the CPU: on an H100 with those wheels and no ``LD_LIBRARY_PATH``,
    the session ran on the CPU until this was called (``benchmarks/gpu_check.py``). onnxruntime
    ≥ 1.21 has ``preload_dlls`` for this; older ones rely on the library path, as before.
    """
    global _cuda_preloaded
    preload = getattr(ort, "preload_dlls", None)
    if _cuda_preloaded or preload is None:
        return
    _cuda_preloaded = True
    try:
        with contextlib.redirect_stdout(io.StringIO()) as said:  # it prints its warnings
            preload()
    except Exception as err:  # noqa: BLE001 - a failed preload only means the library path decides
        log.info("CUDA libraries not preloaded (%s); the system library path decides", err)
        return
    if said.getvalue().strip():
        log.info("preloading CUDA libraries: %s", " ".join(said.getvalue().split()))


_cuda_preloaded = False

#: Stems of the CUDA libraries the CUDA provider needs (runtime, BLAS, cuDNN), and the driver's.
_CUDA_LIBRARY_STEMS = ("libcudart", "libcublas", "libcudnn", "cudart64", "cublas64", "cudnn64")
_CUDA_DRIVER = {"Linux": "libcuda.so.1", "Windows": "nvcuda.dll"}


def cuda_report(ort) -> str:
    """One line for ``vcam-me doctor`` when this onnxruntime offers CUDA: which CUDA libraries
    this process has loaded and from where, and whether the NVIDIA driver is there. Without the
    driver the CUDA provider cannot start and the CPU runs the network."""
    import ctypes
    import platform

    preload_cuda_libraries(ort)
    loaded: dict[str, str] = {}
    try:  # Linux: what the process has mapped
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:  # address, perms, offset, device, inode[, path]
                fields = line.split(maxsplit=5)
                path = fields[5].strip() if len(fields) == 6 else ""
                name = Path(path).name
                if name.startswith(_CUDA_LIBRARY_STEMS) and name not in loaded:
                    loaded[name] = str(Path(path).parent)
    except OSError:
        pass
    folders = sorted(set(loaded.values()))
    libraries = (f"CUDA libraries loaded: {', '.join(sorted(loaded))} (from {'; '.join(folders)})" if loaded
                 else "no CUDA libraries loaded (install onnxruntime-gpu[cuda,cudnn], or CUDA and cuDNN)")
    driver_name = _CUDA_DRIVER.get(platform.system())
    if driver_name is None:
        return libraries
    try:
        ctypes.CDLL(driver_name)
        driver = f"NVIDIA driver: found ({driver_name})"
    except OSError:
        driver = f"NVIDIA driver: not found ({driver_name}), so the CPU runs the network"
    return f"{libraries}; {driver}"


def open_session(path: Path, *, device: str = "auto", threads: int = 1, what: str = "appearance network"):
    """ONNX Runtime session for ``path``; returns ``(session, provider actually used)``.

    ``device``: "cpu", "gpu" (CUDA, warning when it is not really used) or "auto" (CUDA when
    this onnxruntime has it and it starts, else the CPU). ``threads``: intra-op threads on
    the CPU (1 by default: design.md §2 gives the whole app two cores).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = [CPU]
    if device in ("auto", "gpu") and CUDA in ort.get_available_providers():
        preload_cuda_libraries(ort)
        providers = [CUDA, CPU]
    try:
        session = ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{what} {path} cannot be loaded: {str(err).splitlines()[0]}") from None
    actual = session.get_providers()[0]
    if device == "gpu" and actual != CUDA:
        log.warning("%s: CUDA was asked for but %s runs it (no usable GPU or CUDA libraries)", what, actual)
    return session, actual


@dataclass(frozen=True)
class AppearanceFiles:
    """Where an avatar's appearance network lives: fp32 (GPU) and int8 (CPU) ONNX files."""

    fp32: Path
    int8: Path | None = None

    def for_provider(self, provider: str) -> Path:
        return self.fp32 if provider == CUDA or self.int8 is None else self.int8


class AppearanceNet:
    """One ONNX appearance head: ``(crop (S, S, 3) uint8, condition)`` → premultiplied residual.

    Build it with :meth:`load` (I/O); the constructor only wraps a ready session.
    """

    def __init__(self, session, provider: str, size: int = CROP_SIZE) -> None:
        self.session = session
        self.provider = provider
        self.size = size
        self.calls = 0
        self.busy_s = 0.0

    @classmethod
    def load(cls, files: AppearanceFiles, *, device: str = "auto", threads: int = 1) -> AppearanceNet:
        import onnxruntime as ort

        wants_gpu = device in ("auto", "gpu") and CUDA in ort.get_available_providers()
        path = files.fp32 if wants_gpu else files.for_provider(CPU)
        session, provider = open_session(path, device=device, threads=threads)
        if provider != CUDA and path != files.for_provider(provider):
            # CUDA did not start: the CPU runs the int8 file, which is faster there
            session, provider = open_session(files.for_provider(provider), device="cpu", threads=threads)
        shape = session.get_inputs()[0].shape
        size = shape[-1] if isinstance(shape[-1], int) else CROP_SIZE
        log.info("appearance network %s on %s", path.name, provider)
        return cls(session, provider, size)

    def __call__(self, crop: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """``(S, S, 3) float32`` premultiplied residual ``mask · residual`` in [−1, 1] (crop space)."""
        t0 = time.perf_counter()
        x = (crop.astype(np.float32) * (1.0 / 255.0)).transpose(2, 0, 1)[None]
        residual, mask = self.session.run(None, {"warped": x, "condition": condition})
        self.calls += 1
        self.busy_s += time.perf_counter() - t0
        return np.ascontiguousarray((residual[0] * mask[0]).transpose(1, 2, 0))


@dataclass(frozen=True)
class Residual:
    """A network output ready to composite: ``delta`` = round(255 · mask · residual), whole
    grey levels held as float32, over ``box`` = ``(x0, y0, x1, y1)`` of the crop, the part
    where it changes anything. (float32, not int16: OpenCV warps and resizes float32 images
    faster, and the frame's composite costs 0.62 instead of 0.88 ms at 720p.)"""

    delta: np.ndarray
    box: tuple[int, int, int, int]

    @classmethod
    def of(cls, premultiplied: np.ndarray) -> Residual | None:
        delta = np.rint(premultiplied * 255.0).astype(np.float32)
        rows = np.nonzero(np.any(delta != 0, axis=(1, 2)))[0]
        if rows.size == 0:
            return None
        cols = np.nonzero(np.any(delta[rows[0]:rows[-1] + 1] != 0, axis=(0, 2)))[0]
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(np.ascontiguousarray(delta[y0:y1, x0:x1]), (x0, y0, x1, y1))


class _Worker:
    """Runs the network on its own thread on the newest crop offered; never queues more than one."""

    def __init__(self, net: AppearanceNet) -> None:
        self._net = net
        self._cv = threading.Condition()
        self._job: tuple[np.ndarray, np.ndarray] | None = None
        self._busy = False
        self._closed = False
        self.latest: Residual | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vcam-appearance", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy

    def offer(self, crop: np.ndarray, condition: np.ndarray) -> bool:
        with self._cv:
            if self._busy or self._closed:
                return False
            self._job, self._busy = (crop, condition), True
            self._cv.notify()
            return True

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                crop, condition = self._job
                self._job = None
            try:
                self.latest = Residual.of(self._net(crop, condition))
            except BaseException as err:  # reported to the render thread, which stops using the net
                self.error = err
                with self._cv:
                    self._closed = True
                return
            finally:
                with self._cv:
                    self._busy = False

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=2.0)


class NeuralAvatarRenderer:
    """The mesh-warp renderer plus the appearance network's residual (see the module doc).

    ``warp`` must be an :class:`~vcam_me.avatar.renderer.AvatarRenderer` created with its own
    drawn mouth and lids turned off (the network draws those); it exposes the posed mesh of
    its last frame as ``last_mesh``.
    """

    def __init__(self, warp, net: AppearanceNet, *, asynchronous: bool, min_interval_ms: float = 0.0) -> None:
        # min_interval_ms only paces the asynchronous worker; its default lives in the config
        # ([avatar] appearance_interval_ms), which the composition root passes in.
        self.warp = warp
        self.net = net
        self.asynchronous = asynchronous
        self.min_interval_ms = float(min_interval_ms)
        self._worker = _Worker(net) if asynchronous else None
        self._last_offer = -1e18
        self._offered: np.ndarray | None = None  # the condition of the last call
        self._latest: Residual | None = None
        self._failed = False

    @property
    def size(self) -> tuple[int, int]:
        return self.warp.size

    def render(self, state: ExpressionState) -> np.ndarray:
        out = self.warp.render(state)
        if self._failed:
            return out
        s = self.net.size
        m = similarity_transform(self.warp.last_mesh[:, :2], s)
        if m is None:
            return out
        if self._worker is None:
            self._latest = Residual.of(self.net(self._crop(out, m), condition_of(state)))
        else:
            if self._worker.error is not None:
                log.error("appearance network stopped (%s); showing the mesh warp alone", self._worker.error)
                self._failed = True
                return out
            now = time.perf_counter() * 1000.0
            # the crop is cut only when the network is free to take it (≤ the camera's rate)
            if now - self._last_offer >= self.min_interval_ms and not self._worker.busy:
                condition = condition_of(state)
                # A face that has not changed since the last call (a listener, a paused or idle
                # face) would get the same answer: keep the residual in hand. Compared with the
                # last call's input, not the last frame's, so slow drift still adds up to a call.
                changed = self._offered is None or float(np.abs(condition - self._offered).max()) >= STILL_CONDITION
                if changed and self._worker.offer(self._crop(out, m), condition):
                    self._last_offer = now
                    self._offered = condition
            self._latest = self._worker.latest
        if self._latest is not None:
            add_residual(out, self._latest, m)
        return out

    def _crop(self, image: np.ndarray, m: np.ndarray) -> np.ndarray:
        s = self.net.size
        return cv2.warpAffine(image, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()


def add_residual(out: np.ndarray, residual: Residual, m: np.ndarray) -> None:
    """Add a crop-space :class:`Residual` to ``out`` in place, through the image→crop
    similarity ``m``; only the footprint of its box is touched (saturating at 0 and 255)."""
    bx0, by0, bx1, by1 = residual.box
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[bx0, by0], [bx1, by0], [bx0, by1], [bx1, by1]], np.float64) @ inv[:, :2].T + inv[:, 2]
    h, w = out.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, (w, h))
    if x1 <= x0 or y1 <= y0:
        return
    shifted = m.copy()  # ROI pixel → box pixel
    shifted[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64) - (bx0, by0)
    w, h = int(x1 - x0), int(y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if abs(np.linalg.det(m[:, :2])) < 0.25:
        # The crop is magnified ≥ 2× (a 128² crop of a 720p face): warp at half the output
        # resolution and upsample; bilinear upsampling of a residual that was itself upsampled
        # loses nothing (≤ 2 grey levels) and costs a third (2.2 → 0.75 ms at 450²).
        # Half-size pixel x' is output pixel 2x' + 0.5, as cv2.resize counts it.
        half = shifted.copy()
        half[:, :2] = 2.0 * shifted[:, :2]
        half[:, 2] = shifted[:, 2] + 0.5 * (shifted[:, 0] + shifted[:, 1])
        w2, h2 = (w + 1) // 2, (h + 1) // 2
        small = cv2.warpAffine(residual.delta, half, (w2, h2), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        delta = cv2.resize(small, (2 * w2, 2 * h2), interpolation=cv2.INTER_LINEAR)[:h, :w]
    else:
        delta = cv2.warpAffine(residual.delta, shifted, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    roi = out[y0:y1, x0:x1]
    cv2.add(roi, delta, dst=roi, dtype=cv2.CV_8U)
