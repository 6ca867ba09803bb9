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

The MP4 is *fragmented* (the ``moov`` header with the first fragment, then a ``moof``+``mdat``
fragment per keyframe, one every :data:`KEYFRAME_INTERVAL_S`), so the file plays however it
ends: when a write fails
(disk full, file too large for the filesystem, the drive gone) the recording stops, the file
is cut back to its last complete fragment and kept, playable, under the name the user asked
for, and :attr:`RecorderSink.cut_short` says why (one line). It is not claimed as complete:
``finish`` is not run on it. Live use passes ``on_cut_short(message)``: the user hears it at
once and later frames are dropped, so the stream and its other outputs go on. Without it,
the next :meth:`send` raises :class:`OutputError` (an offline render has nothing left to do),
and so does :meth:`close`, after it has kept what was written.

``finish`` (optional) post-processes the complete file before it gets its name: it is called
as ``finish(complete_mp4, out_path)`` and writes a new file at ``out_path`` (the composition
root passes C2PA signing here; the recorder knows nothing of it). If it raises, the complete,
unprocessed recording takes the name instead and :attr:`RecorderSink.finish_error` says why,
in one line; the recording is never lost to a failed finishing step.
"""

from __future__ import annotations

import errno
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

#: Seconds between keyframes, and so between fragments: at most this much is lost when the
#: disk fills (the fragment being written when it did).
KEYFRAME_INTERVAL_S = 2.0
#: Fragmented MP4: a file cut at any point plays up to its last complete fragment.
#: ``delay_moov`` (not ``empty_moov``) writes the header once the first fragment is known, so
#: its edit list can undo x264's B-frame delay: frame n still plays at n / fps.
MOVFLAGS = "frag_keyframe+delay_moov+default_base_moof"

#: What a failed write means to a user, by errno.
_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file is too large for this disk",
    errno.EDQUOT: "the disk quota is used up",
    errno.EIO: "the disk reported an input/output error",
    errno.EROFS: "the disk became read-only",
}


def describe_write_error(err: BaseException) -> str:
    """One line for a failed recording write, plain words first (``"the disk is full ([Errno 28] …)"``)."""
    if isinstance(err, OSError) and err.errno and err.strerror:
        text = f"[Errno {err.errno}] {err.strerror}"  # not the file name: ours is a hidden temporary one
    else:
        text = " ".join(str(err).split()) or type(err).__name__
    words = _WRITE_ERRORS.get(getattr(err, "errno", None))
    return f"{words} ({text})" if words else text


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
                 finish: Finisher | None = None, on_cut_short: Callable[[str], None] | None = None) -> None:
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
        self._on_cut_short = on_cut_short
        #: Why the recording stopped early (one line), or ``None``; then the file holds what
        #: was written before, up to its last complete fragment, and is not finished.
        self.cut_short: str | None = None
        #: The one line that says what was kept after a cut (set by :meth:`close`), or ``None``.
        self.cut_short_message: str | None = None
        #: Frames and seconds of video the kept file holds (set by :meth:`close`).
        self.frames_kept = 0
        self.seconds_kept = 0.0
        self._container_closed = False
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

    @property
    def stopped_early(self) -> bool:
        """Whether a write failed, so the recording stopped before :meth:`close` (any thread)."""
        return self._error is not None

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
        on_cut_short: Callable[[str], None] | None = None,
    ) -> "RecorderSink":
        """Start an MP4 recording of ``size`` = (width, height) frames at ``fps``.

        ``crf`` defaults to ``options.record_crf``; ``preset`` is x264's speed/size trade-off;
        ``threads`` = 0 lets x264 choose. Raises :class:`OutputError` (one line) if the file
        exists and ``overwrite`` is false, or the folder is missing or not writable.
        ``on_cut_short(message)``: called once (from the encoder thread) if a write fails;
        then the stream may go on and later frames are dropped (see the module docstring).
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
            container = av.open(str(temp_path), mode="w", format="mp4", options={"movflags": MOVFLAGS})
        except Exception as err:  # PermissionError, av.error.*: the path cannot be written
            raise OutputError(f"cannot record to {path}: {' '.join(str(err).split())}") from err
        try:
            rate = _rate(fps)
            stream = container.add_stream("libx264", rate=rate)
            cc = stream.codec_context
            cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
            cc.time_base = 1 / rate
            cc.options = {"crf": str(crf), "preset": preset}
            cc.gop_size = max(1, round(float(rate) * KEYFRAME_INTERVAL_S))
            _tag_bt601_limited(cc)
            if threads:
                cc.thread_count = int(threads)
        except Exception as err:
            container.close()
            _unlink(temp_path)
            raise OutputError(f"cannot start the H.264 encoder for {path}: {' '.join(str(err).split())}") from err
        log.info("recording %dx%d @ %s fps, crf %d, to %s", width, height, fps, crf, path)
        return cls(container, stream, path, temp_path, (width, height), fps, overwrite=overwrite,
                   queue_frames=queue_frames, block=block, finish=finish, on_cut_short=on_cut_short)

    # -- caller side -------------------------------------------------------------------------
    def _send(self, frame: RenderedFrame) -> None:
        check_image(frame.image, self.size)
        if self._stopped_early():
            return
        index = self._index
        self._index += 1
        if self._block:
            while True:
                try:
                    buffer = self._free.get(timeout=0.5)
                    break
                except queue.Empty:
                    if self._stopped_early():
                        return
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

    def _stopped_early(self) -> bool:
        """True when the recording has stopped and the frame is to be dropped (live use);
        raises :class:`OutputError` when there is no one to tell (offline use)."""
        if self._error is None:
            return False
        if self._on_cut_short is None:
            self._raise_pending()
        self.frames_dropped += 1
        return True

    def _raise_pending(self) -> None:
        if self._error is not None:
            err = self._error
            raise OutputError(f"recording to {self.path} failed: {describe_write_error(err)}") from err

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
            # info, not error: the caller hears it in one line (on_cut_short, or send/close raise)
            log.info("recorder failed: %s", err)
            self._error = err
            while True:  # hand the buffers back so a waiting send() wakes up and sees the error
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    self._free.put(item[1])
            self._close_container()  # now, not at the end of the call: let go of the file
            if self._on_cut_short is not None:
                try:
                    self._on_cut_short(f"recording to {self.path} stopped after about "
                                       f"{self.frames_written / float(_rate(self.fps)):.0f} s: "
                                       f"{describe_write_error(err)}; the stream goes on, and what was "
                                       f"written is kept")
                except Exception:  # a listener's bug must not hide the failure
                    log.exception("recorder: on_cut_short failed")

    def _close_container(self) -> None:
        """Close the container once; a failure (the trailer cannot be written either when the
        disk is full) becomes the recorder's error if it has none yet."""
        if self._container_closed:
            return
        self._container_closed = True
        try:
            self._container.close()
        except Exception as err:  # noqa: BLE001 - kept and reported with the file name
            if self._error is None:
                self._error = err
            else:
                log.debug("recorder: closing after the failure failed too: %s", err)

    # -- finishing ---------------------------------------------------------------------------
    def _close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._close_container()
        if self._error is None and self.frames_written and not _ends_with_a_whole_box(self.temp_path):
            # PyAV does not report a failed write of the last fragment and trailer at close
            self._error = OutputError("the end of the recording could not be written (is the disk full?)")
        if self._error is not None:
            self._keep_what_was_written()
            return
        if self.frames_written == 0:
            _unlink(self.temp_path)
            log.warning("recorder: no frames were sent; %s not written", self.path)
            return
        finished = self._finished_file()
        self._move_into_place(finished)
        if finished != self.temp_path:
            _unlink(self.temp_path)  # only now: until the processed file has its name, this is the recording

    def _keep_what_was_written(self) -> None:
        """After a failed write: cut the file back to its last complete fragment and give it
        the user's name, unfinished; say why in :attr:`cut_short` (and raise it, offline)."""
        reason = describe_write_error(self._error)
        self.cut_short = reason
        try:
            self.frames_kept, self.seconds_kept = _trim_to_complete_fragments(self.temp_path)
        except Exception as err:  # noqa: BLE001 - an unreadable remainder is as good as none
            log.warning("recorder: what was written to %s cannot be read back: %s", self.path, err)
            self.frames_kept, self.seconds_kept = 0, 0.0
        if self.frames_kept == 0:
            _unlink(self.temp_path)
            message = f"recording to {self.path} failed before a playable part was written: {reason}"
        else:
            self._move_into_place(self.temp_path)
            unsigned = "; it is not signed" if self._finish is not None else ""
            message = (f"recording to {self.path} was cut short after {self.seconds_kept:.1f} s: {reason}; "
                       f"those {self.seconds_kept:.1f} s are kept and play{unsigned}")
        self.cut_short_message = message
        log.info("recorder: %s", message)  # the caller says it (a CLI line, a notice) or it is raised below
        if self._on_cut_short is None:
            raise OutputError(message) from None

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


def _top_level_boxes(path: Path):
    """``(type, start, end)`` of each top-level MP4 box, in order, as far as the file holds
    whole boxes (a box cut off by the end of the file is not listed)."""
    size_of_file = path.stat().st_size
    with open(path, "rb") as f:
        start = 0
        while start + 8 <= size_of_file:
            f.seek(start)
            header = f.read(16)
            size, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if size == 1:  # a 64-bit size follows the type
                if len(header) < 16:
                    return
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:  # "to the end of the file": only the last box may say so
                size = size_of_file - start
            if size < 8 or start + size > size_of_file:
                return
            yield kind, start, start + size
            start += size


def _ends_with_a_whole_box(path: Path) -> bool:
    """Whether the file is a run of whole top-level boxes, up to its last byte."""
    end = 0
    for _kind, _start, stop in _top_level_boxes(path):
        end = stop
    return end == path.stat().st_size


def _trim_to_complete_fragments(path: Path) -> tuple[int, float]:
    """Cut a fragmented MP4 back to its last complete ``moof``+``mdat`` pair (a write that
    failed half way leaves a partial fragment that decoders stumble on); returns the frames
    and seconds it then holds (0, 0.0 when not one fragment is complete)."""
    import av

    end = 0
    previous = None
    have_moov = False
    for kind, _start, stop in _top_level_boxes(path):
        have_moov = have_moov or kind == "moov"
        if kind == "mdat" and previous == "moof" and have_moov:
            end = stop
        previous = kind
    if end == 0:
        return 0, 0.0
    if path.stat().st_size > end:
        os.truncate(path, end)  # shrinking needs no free space
    frames, last = 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                frames += 1
                last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return frames, last


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
