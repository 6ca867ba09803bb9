"""MP4 recorder: H.264 (libx264 through PyAV), yuv420p, constant quality (CRF).

Frame ``n`` sent gets presentation time ``n / fps`` (timestamps come from the frame index,
not the wall clock, so a recording plays at the output rate even if the render loop
jittered). Encoding runs on a background thread: :meth:`RecorderSink.send` only copies the
RGB image into one of a few preallocated buffers (≈ 0.3 ms at 720p) and queues it; the
thread converts it to yuv420p (OpenCV, BT.601 limited range, tagged as such in the file)
and runs x264, both without holding the GIL. When every buffer is in use ``send`` waits
(``block=True``, the default: a recording keeps every frame) or drops the frame
(``block=False``, for live use; the next frame keeps its own index, so timing stays right
and the dropped frame shows as a repeat).

The file is written under a hidden temporary name in the same folder and renamed to the
final name by :meth:`RecorderSink.close`, so a crash never leaves a half-written file under
the name the user asked for. An existing file is never replaced unless ``overwrite=True``.

``finish`` (optional) post-processes the complete file before it gets its name: it is called
as ``finish(complete_mp4, out_path)`` and writes a new file at ``out_path`` (the composition
root passes C2PA signing here; the recorder knows nothing of it). If it raises, the complete,
unprocessed recording takes the name instead and :attr:`RecorderSink.finish_error` says why,
in one line; the recording is never lost to a failed finishing step.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from vcam_me.config import OutputOptions
from vcam_me.errors import OutputError
from vcam_me.output.base import SinkBase, check_image
from vcam_me.types import RenderedFrame

log = logging.getLogger(__name__)

_STOP = object()

#: ``finish(complete_mp4, out_path)``: write a post-processed copy of the recording to ``out_path``.
Finisher = Callable[[Path, Path], None]


def check_writable(path: Path, overwrite: bool) -> Path:
    """The absolute output path, or :class:`OutputError` (one line) if it cannot be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"cannot record to {path}: it is a folder")
    if path.exists() and not overwrite:
        raise OutputError(f"refusing to overwrite {path}: the file exists (choose another name, or allow overwriting)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"cannot record to {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"cannot record to {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot record to {path}: folder {parent} is not writable")
    return path.absolute()


class RecorderSink(SinkBase):
    """Writes frames to an MP4 file. Build it with :meth:`open`."""

    kind = "recorder"

    def __init__(self, container, stream, path: Path, temp_path: Path, size: tuple[int, int], fps: int, *,
                 overwrite: bool = False, queue_frames: int = 8, block: bool = True,
                 finish: Finisher | None = None) -> None:
        super().__init__()
        self.path = path
        self.temp_path = temp_path
        self.size = (int(size[0]), int(size[1]))
        self.fps = fps
        self._container = container
        self._stream = stream
        self._overwrite = overwrite
        self._block = block
        self._finish = finish
        #: Why ``finish`` failed (one line), or ``None``; then the file is the unprocessed recording.
        self.finish_error: str | None = None
        self._time_base = 1 / _rate(fps)  # one tick per frame: pts = frame index
        # Buffers go round: free → (send copies a frame in) → work → (thread converts) → free.
        w, h = self.size
        self._free: queue.Queue = queue.Queue()
        for _ in range(max(1, queue_frames)):
            self._free.put(np.empty((h, w, 3), np.uint8))
        self._queue: queue.Queue = queue.Queue()
        self._i420 = np.empty((h * 3 // 2, w), np.uint8)
        self._error: BaseException | None = None
        #: Frames handed to the encoder / frames dropped because the encoder was busy.
        self.frames_written = 0
        self.frames_dropped = 0
        self._index = 0
        self._thread = threading.Thread(target=self._encode_loop, name="vcam-recorder", daemon=True)
        self._thread.start()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        size: tuple[int, int],
        fps: float,
        options: OutputOptions | None = None,
        *,
        overwrite: bool = False,
        crf: int | None = None,
        preset: str = "veryfast",
        threads: int = 0,
        queue_frames: int = 8,
        block: bool = True,
        finish: Finisher | None = None,
    ) -> "RecorderSink":
        """Start an MP4 recording of ``size`` = (width, height) frames at ``fps``.

        ``crf`` defaults to ``options.record_crf``; ``preset`` is x264's speed/size trade-off;
        ``threads`` = 0 lets x264 choose. Raises :class:`OutputError` (one line) if the file
        exists and ``overwrite`` is false, or the folder is missing or not writable.
        """
        import av

        options = options or OutputOptions()
        width, height = int(size[0]), int(size[1])
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"recording size must be positive and even for yuv420p, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        crf = options.record_crf if crf is None else crf
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        path = check_writable(Path(path), overwrite)
        temp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            container = av.open(str(temp_path), mode="w", format="mp4")
        except Exception as err:  # PermissionError, av.error.*: the path cannot be written
            raise OutputError(f"cannot record to {path}: {' '.join(str(err).split())}") from err
        try:
            rate = _rate(fps)
            stream = container.add_stream("libx264", rate=rate)
            cc = stream.codec_context
            cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
            cc.time_base = 1 / rate
            cc.options = {"crf": str(crf), "preset": preset}
            _tag_bt601_limited(cc)
            if threads:
                cc.thread_count = int(threads)
        except Exception as err:
            container.close()
            _unlink(temp_path)
            raise OutputError(f"cannot start the H.264 encoder for {path}: {' '.join(str(err).split())}") from err
        log.info("recording %dx%d @ %s fps, crf %d, to %s", width, height, fps, crf, path)
        return cls(container, stream, path, temp_path, (width, height), fps, overwrite=overwrite,
                   queue_frames=queue_frames, block=block, finish=finish)

    # -- caller side -------------------------------------------------------------------------
    def _send(self, frame: RenderedFrame) -> None:
        self._raise_pending()
        check_image(frame.image, self.size)
        index = self._index
        self._index += 1
        if self._block:
            while True:
                try:
                    buffer = self._free.get(timeout=0.5)
                    break
                except queue.Empty:
                    self._raise_pending()
                    if not self._thread.is_alive():
                        raise OutputError(f"recorder for {self.path} stopped") from None
        else:
            try:
                buffer = self._free.get_nowait()
            except queue.Empty:
                self.frames_dropped += 1
                return
        np.copyto(buffer, frame.image)  # the caller may reuse its image after send returns
        self._queue.put((index, buffer))

    def _raise_pending(self) -> None:
        if self._error is not None:
            err = self._error
            raise OutputError(f"recording to {self.path} failed: {' '.join(str(err).split())}") from err

    # -- encoder thread ----------------------------------------------------------------------
    def _encode_loop(self) -> None:
        import av
        import cv2

        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                index, buffer = item
                if self._error is not None:
                    self._free.put(buffer)
                    continue  # drain
                cv2.cvtColor(buffer, cv2.COLOR_RGB2YUV_I420, dst=self._i420)
                self._free.put(buffer)
                vf = av.VideoFrame.from_ndarray(self._i420, format="yuv420p")
                vf.pts = index
                vf.time_base = self._time_base
                for packet in self._stream.encode(vf):
                    self._container.mux(packet)
                self.frames_written += 1
            if self._error is None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
        except BaseException as err:  # thread boundary: keep it for the caller
            log.error("recorder failed: %s", err)
            self._error = err
            while True:  # hand the buffers back so a waiting send() wakes up and sees the error
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    self._free.put(item[1])

    # -- finishing ---------------------------------------------------------------------------
    def _close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        try:
            self._container.close()
        except Exception as err:  # noqa: BLE001 - reported below with the file name
            if self._error is None:
                self._error = err
        if self._error is not None:
            _unlink(self.temp_path)
            self._raise_pending()
        if self.frames_written == 0:
            _unlink(self.temp_path)
            log.warning("recorder: no frames were sent; %s not written", self.path)
            return
        finished = self._finished_file()
        self._move_into_place(finished)
        if finished != self.temp_path:
            _unlink(self.temp_path)  # only now: until the processed file has its name, this is the recording

    def _finished_file(self) -> Path:
        """The file to put in place: ``finish``'s output, or the recording itself if it failed."""
        if self._finish is None:
            return self.temp_path
        processed = self.temp_path.with_name(self.temp_path.name[: -len(".partial")] + ".finishing")
        try:
            self._finish(self.temp_path, processed)
            if not processed.is_file() or processed.stat().st_size == 0:
                raise OutputError("the finishing step wrote nothing")
        except Exception as err:  # noqa: BLE001 - any failure: keep the unprocessed recording, say why
            _unlink(processed)
            self.finish_error = " ".join(str(err).split()) or type(err).__name__
            log.warning("recorder: finishing %s failed (%s); keeping the recording as it is", self.path, self.finish_error)
            return self.temp_path
        return processed

    def _move_into_place(self, finished: Path) -> None:
        if self._overwrite:
            os.replace(finished, self.path)
            return
        try:
            os.link(finished, self.path)  # fails if the name was taken meanwhile: never clobbers
        except FileExistsError:
            raise OutputError(f"refusing to overwrite {self.path}, which appeared while recording; "
                              f"the recording is kept as {finished}") from None
        except OSError:  # no hard links here (some filesystems): rename, which on Windows never replaces
            if self.path.exists():
                raise OutputError(f"refusing to overwrite {self.path}, which appeared while recording; "
                                  f"the recording is kept as {finished}") from None
            os.rename(finished, self.path)
            return
        _unlink(finished)


def _rate(fps: float) -> Fraction:
    """The frame rate as a fraction (29.97 → 2997/100; 60 → 60)."""
    return Fraction(fps).limit_denominator(1001)


def _tag_bt601_limited(cc) -> None:
    """Say in the stream which colours the yuv420p samples mean (OpenCV's RGB → I420 is
    BT.601, limited range); untagged HD video is often decoded as BT.709 instead."""
    for name, value in (("colorspace", 6), ("color_primaries", 6), ("color_trc", 6), ("color_range", 1)):
        try:
            setattr(cc, name, value)
        except Exception:  # noqa: BLE001 - older PyAV: leave untagged
            log.debug("cannot set %s on the encoder", name)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
