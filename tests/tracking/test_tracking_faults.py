"""The real tracker (MediaPipe, shipped model) on fault videos made with ffmpeg from the
bundled real clip: two faces side by side, the chosen one blacked out for a while; a face
slid half out of the frame. Rendering them is tested in tests/test_tracking_faults_end_to_end.py."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from vcam_me.app import BUNDLED_DRIVING, _open_driving, build_tracker
from vcam_me.config import load_config
from vcam_me.pipeline import on_timeline, track_all
from vcam_me.tracking.selector import share_in_frame
from vcam_me.types import Frame

pytestmark = pytest.mark.slow  # about 10 s of MediaPipe on real video

CLIP_S = 3.0
LEFT_WIDTH, WIDTH = 360, 600
GONE_S = (1.0, 1.8)  # the chosen (left, larger) face is blacked out


def _ffmpeg(args: list[str], out: Path) -> Path:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args, "-an", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", str(out)], check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory) -> Path:
    """The actor twice, side by side: a large face on the left (chosen at start) and a smaller
    one on the right from another moment of the clip; the left one is blacked out in GONE_S."""
    out = tmp_path_factory.mktemp("faults") / "two_faces.mp4"
    graph = (f"[0:v]crop=360:360:140:0[a];[1:v]crop=360:360:140:0,scale=240:240,pad=240:360:0:60[b];"
             f"[a][b]hstack,drawbox=x=0:y=0:w={LEFT_WIDTH}:h=ih:color=black:t=fill:"
             f"enable='between(t,{GONE_S[0]},{GONE_S[1]})'[v]")
    return _ffmpeg(["-ss", "10.5", "-t", str(CLIP_S), "-i", str(BUNDLED_DRIVING),
                    "-ss", "15", "-t", str(CLIP_S), "-i", str(BUNDLED_DRIVING),
                    "-filter_complex", graph, "-map", "[v]"], out)


def _frames(path: Path) -> list[Frame]:
    with _open_driving(path) as source:
        return list(on_timeline(source.iter_timed()))


def _side(obs) -> str:
    x = float(np.mean(obs.landmarks[:, 0])) * obs.image_size[0]
    return "left" if x < LEFT_WIDTH else "right"


def test_follows_the_face_chosen_at_start_and_never_jumps_to_the_other(two_faces):
    cfg = load_config(None)
    assert cfg.tracking.follow_one_of == 2
    frames = _frames(two_faces)
    with build_tracker(cfg, "video") as tracker:
        observations = track_all(frames, tracker)
    gone = [GONE_S[0] * 1000 + 50 <= o.timestamp_ms <= GONE_S[1] * 1000 for o in observations]
    sides = [_side(o) if o.has_face else None for o in observations]
    assert all(s in ("left", None) for s in sides), "the followed face jumped to the other side"
    assert all(s is None for s, g in zip(sides, gone) if g)  # while it is away: no face, not the other one
    before = [s for o, s in zip(observations, sides) if o.timestamp_ms < GONE_S[0] * 1000]
    after = [s for o, s in zip(observations, sides) if o.timestamp_ms > GONE_S[1] * 1000 + 300]
    assert before and all(s == "left" for s in before)
    assert after and all(s == "left" for s in after)  # and it is followed again when it is back


def test_control_the_first_face_mediapipe_reports_does_jump(two_faces):
    """Without the selector (one face, whichever MediaPipe reports) the avatar would show the
    other person while the chosen one is away: the problem the selector solves exists."""
    frames = _frames(two_faces)
    with build_tracker(load_config(None), "video", num_faces=1) as tracker:
        firsts = [faces[0] if faces else None for faces in map(tracker.track_all_faces, frames)]
    sides = [_side(o) for o in firsts if o is not None]
    assert "right" in sides


@pytest.fixture(scope="module")
def sliding_out(tmp_path_factory) -> Path:
    """The bundled clip sliding right until the face's centre is at the frame's edge, and back."""
    ramp = "min(1,max(0,min((t-0.5)/0.6,(2.6-t)/0.6)))"
    out = tmp_path_factory.mktemp("faults") / "half_out.mp4"
    return _ffmpeg(["-ss", "10.5", "-t", str(CLIP_S), "-i", str(BUNDLED_DRIVING),
                    "-vf", f"pad=1280:360:640:0,crop=640:360:'640-330*{ramp}':0"], out)


def test_a_face_mostly_out_of_the_frame_counts_as_lost(sliding_out):
    frames = _frames(sliding_out)
    cfg = load_config(None)
    with build_tracker(cfg, "video") as tracker:
        observations = track_all(frames, tracker)
    seen = [o for o in observations if o.has_face]
    assert seen and all(share_in_frame(o) >= cfg.tracking.min_face_in_frame for o in seen)
    assert not all(o.has_face for o in observations)
    # MediaPipe on its own keeps reporting the face further out than that
    loose = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, min_face_in_frame=0.0))
    with build_tracker(loose, "video") as tracker:
        shares = [share_in_frame(o) for o in track_all(frames, tracker) if o.has_face]
    assert min(shares) < cfg.tracking.min_face_in_frame


def test_live_stream_mode_follows_the_chosen_face_too(two_faces):
    """The live path: MediaPipe's own thread delivers each result through the same selector."""
    import threading

    frames = _frames(two_faces)
    seen: list = []
    done = threading.Event()

    def on_result(obs) -> None:
        seen.append(obs)
        if obs.timestamp_ms == frames[-1].timestamp_ms:
            done.set()

    with build_tracker(load_config(None), "live_stream", on_result=on_result) as tracker:
        for frame in frames:
            tracker.submit(frame)
            time.sleep(0.02)  # about the clip's own pace, so that few frames are dropped
        done.wait(5.0)
    sides = [_side(o) for o in seen if o.has_face]
    assert len(sides) > len(frames) // 2
    assert set(sides) == {"left"}
    assert any(not o.has_face for o in seen if GONE_S[0] * 1000 + 50 <= o.timestamp_ms <= GONE_S[1] * 1000)
