"""The recorder's disk fills: the recording stops, the file is cut back to its last complete
fragment and kept, playable, and the stream goes on. The faults are real filesystem errors:
a child process whose file-size limit (RLIMIT_FSIZE) makes writes fail with EFBIG, and, where
mounting works, a tiny tmpfs that fills up (ENOSPC)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from vcam_me.output import FanOutSink, MemorySink, RecorderSink
from vcam_me.output.recorder import describe_write_error
from vcam_me.types import RenderedFrame

FPS = 30
FRAMES = 240  # 8 s: four fragments of 2 s
FRAGMENT = 60  # frames per fragment (KEYFRAME_INTERVAL_S at 30 fps)
SIZE = (320, 180)

# Records FRAMES frames through a fan-out (recorder + memory sink, as a live stream does) and
# prints what happened as JSON. argv: out path, file-size limit in bytes (0 = none), mode
# ("live": the recorder reports through on_cut_short and the stream goes on; "offline": no
# callback, so send and close raise).
CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path

    from vcam_me.errors import OutputError

    sys.path.insert(0, sys.argv[4])
    from test_recorder_faults import frame

    from vcam_me.output import FanOutSink, MemorySink, RecorderSink

    path, limit, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    told, raised = [], None
    memory = MemorySink(max_frames=1)
    recorder = RecorderSink.open(path, (320, 180), 30, preset="ultrafast", threads=1,
                                 on_cut_short=told.append if mode == "live" else None)
    try:
        with FanOutSink([recorder, memory]) as fan:
            for i in range(240):
                fan.send(frame(i))
    except OutputError as err:
        raised = str(err)
    print(json.dumps({"told": told, "raised": raised, "streamed": memory.count, "cut_short": recorder.cut_short,
                      "frames_kept": recorder.frames_kept, "frames_written": recorder.frames_written,
                      "frames_dropped": recorder.frames_dropped}))
""")


def frame(i: int) -> RenderedFrame:
    """A flat picture with a moving noisy patch: a few kB per frame once encoded."""
    w, h = SIZE
    image = np.full((h, w, 3), (i * 3) % 256, np.uint8)
    rng = np.random.default_rng(i)
    x = (i * 5) % (w - 64)
    image[60:124, x:x + 64] = rng.integers(0, 255, (64, 64, 3), np.uint8)
    return RenderedFrame(image, i * 33)


def record_in_child(path: Path, limit: int, mode: str) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(limit), mode, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_plays(path: Path) -> int:
    """ffprobe reads the file without a single complaint, and PyAV decodes it; returns the frames."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                            "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", str(path)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode == 0 and probe.stderr == "", probe.stderr
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert int(stream["nb_read_frames"]) == len(decoded)
    return len(decoded)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def full_size(tmp_path_factory) -> int:
    """The size of the whole recording, made in a child with no limit (the control case)."""
    out = tmp_path_factory.mktemp("full") / "full.mp4"
    result = record_in_child(out, 0, "live")
    assert result["cut_short"] is None and result["told"] == [] and result["frames_written"] == FRAMES
    assert assert_plays(out) == FRAMES
    return out.stat().st_size


needs_rlimit = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"),
                                  reason="RLIMIT_FSIZE and SIGXFSZ are POSIX")


@needs_rlimit
def test_disk_full_while_streaming_keeps_a_playable_recording_and_the_stream_goes_on(tmp_path, full_size):
    out = tmp_path / "call.mp4"
    result = record_in_child(out, int(full_size * 0.6), "live")
    assert result["streamed"] == FRAMES  # the other output got every frame
    assert result["raised"] is None
    (told,) = result["told"]  # said once, at once, in one line
    assert "\n" not in told and f"recording to {out} stopped" in told and "file is too large" in told
    assert "the stream goes on" in told
    assert "[Errno 27]" in result["cut_short"]  # EFBIG: a real filesystem error
    kept = assert_plays(out)
    assert 0 < kept < FRAMES and kept % FRAGMENT == 0  # whole fragments only
    assert kept == result["frames_kept"]
    assert result["frames_dropped"] > 0 and leftovers(tmp_path) == []


@needs_rlimit
def test_disk_full_in_an_offline_render_is_one_error_and_keeps_what_was_written(tmp_path, full_size):
    out = tmp_path / "render.mp4"
    result = record_in_child(out, int(full_size * 0.6), "offline")
    message = result["raised"]
    assert message and "\n" not in message
    assert f"recording to {out} was cut short after 2.0 s" in message or "was cut short after 4.0 s" in message
    assert "are kept and play" in message and ".partial" not in message and assert_plays(out) == result["frames_kept"] > 0
    assert leftovers(tmp_path) == []


@needs_rlimit
def test_disk_full_before_the_first_fragment_leaves_no_file(tmp_path, full_size):
    out = tmp_path / "tiny.mp4"
    result = record_in_child(out, 2000, "live")
    assert result["streamed"] == FRAMES and len(result["told"]) == 1
    assert result["frames_kept"] == 0 and not out.exists() and leftovers(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs, where the OS lets this process mount one (root on Linux)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_tmpfs_is_enospc_and_the_recording_is_kept(tiny_disk):
    out = tiny_disk / "call.mp4"
    told: list[str] = []
    memory = MemorySink(max_frames=1)
    recorder = RecorderSink.open(out, SIZE, FPS, preset="ultrafast", threads=1, on_cut_short=told.append)
    with FanOutSink([recorder, memory]) as fan:
        for i in range(FRAMES * 2):
            fan.send(frame(i))
    assert memory.count == FRAMES * 2
    assert len(told) == 1 and "the disk is full" in told[0] and "[Errno 28]" in recorder.cut_short
    kept = assert_plays(out)
    assert 0 < kept == recorder.frames_kept and kept % FRAGMENT == 0
    assert leftovers(tiny_disk) == []


def test_write_errors_are_said_in_plain_words():
    assert describe_write_error(OSError(28, "No space left on device")) == \
        "the disk is full ([Errno 28] No space left on device)"
    assert describe_write_error(RuntimeError("odd")) == "odd"


@needs_rlimit
def test_disk_full_at_the_very_end_is_noticed_too(tmp_path, full_size):
    """The last fragment is written when the file is closed, where PyAV reports no error: the
    recorder checks the file's boxes and keeps the whole fragments before it."""
    out = tmp_path / "end.mp4"
    result = record_in_child(out, full_size - 1000, "live")  # inside the last fragment
    assert result["told"] == [] and result["cut_short"] == "the end of the recording could not be written (is the disk full?)"
    assert assert_plays(out) == result["frames_kept"] == FRAMES - FRAGMENT
