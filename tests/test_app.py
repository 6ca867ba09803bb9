"""The command line end to end, as a user runs it: real stages, real files, subprocesses.

Bad input must give one clear line on stderr and a non-zero exit, never a traceback, and
must never destroy a file the user already has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
BUNDLED_CLIP = REPO / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"


def vcam(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "vcam_me", *args], check=False, capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private data/config folder so tests never touch the user's own."""
    env = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state")}
    return env


def test_missing_video(tmp_path, home):
    r = vcam("render", "--avatar", "x", "--driving", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o.mp4"), env=home)
    assert_clean_error(r, "video file not found", "nope.mp4")


def test_corrupt_video(tmp_path, home):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    r = vcam("render", "--avatar", "x", "--driving", str(bad), "--out", str(tmp_path / "o.mp4"), env=home)
    assert_clean_error(r, "broken.mp4")


def test_unwritable_output_path(tmp_path, home):
    r = vcam("render", "--avatar", "x", "--driving", str(BUNDLED_CLIP), "--out", str(tmp_path / "no" / "such" / "o.mp4"), env=home)
    assert_clean_error(r, "does not exist")


def test_existing_output_is_never_overwritten(tmp_path, home):
    keep = tmp_path / "mine.mp4"
    keep.write_bytes(b"precious")
    r = vcam("render", "--avatar", "x", "--driving", str(BUNDLED_CLIP), "--out", str(keep), env=home)
    assert_clean_error(r, "exists", "--force")
    assert keep.read_bytes() == b"precious"


def test_invalid_config_value_names_key_and_allowed_values(tmp_path, home):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[output]\nfps = 45\n", encoding="utf-8")
    r = vcam("--config", str(cfg), "doctor", env=home)
    assert_clean_error(r, "output.fps = 45", "60 or 30")


def test_label_cannot_be_switched_off_by_config(tmp_path, home):
    cfg = tmp_path / "sneaky.toml"
    cfg.write_text("[label]\nenabled = false\n", encoding="utf-8")
    r = vcam("--config", str(cfg), "doctor", env=home)
    assert_clean_error(r, "cannot be switched off")


def test_model_with_wrong_hash_is_refused(tmp_path, home):
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models)
    model = models / "face_landmarker.task"
    data = bytearray(model.read_bytes())
    data[1000] ^= 0xFF
    model.write_bytes(bytes(data))
    r = vcam("avatar", "create", "--photo", str(REPO / "assets" / "avatars" / "sample" / "reference.png"),
             "--out", str(tmp_path / "av"), env={**home, "VCAM_ME_MODELS_DIR": str(models)})
    assert_clean_error(r, "face_landmarker.task", "sha256")


def test_photo_without_a_face(tmp_path, home):
    import cv2

    img = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    photo = tmp_path / "wall.png"
    cv2.imwrite(str(photo), cv2.merge([img, img, img]))
    r = vcam("avatar", "create", "--photo", str(photo), "--out", str(tmp_path / "av"), env=home)
    assert_clean_error(r, "no face")


def test_unreadable_photo(tmp_path, home):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"not really a jpeg")
    r = vcam("avatar", "create", "--photo", str(photo), "--out", str(tmp_path / "av"), env=home)
    assert_clean_error(r, "photo.jpg")


def test_camera_index_that_does_not_exist(tmp_path, home):
    r = vcam("run", "--camera", "7", "--record", str(tmp_path / "o.mp4"), "--duration", "1", env=home)
    assert_clean_error(r, "7")


def test_usage_error_is_one_line(home):
    r = vcam("render", "--fps", "45", env=home)
    assert_clean_error(r)


def test_doctor_reports_each_check(home):
    r = vcam("doctor", env=home)
    assert "Traceback" not in r.stderr
    for name in ("face model", "mediapipe", "camera", "virtual camera", "GPU"):
        assert name in r.stdout
    assert r.returncode == 0, r.stdout  # essentials (model, mediapipe, encoder) are present here


def _live_expression(cfg):
    from vcam_me.app import build_expression, build_idle

    return build_expression(cfg, offline=False, micro="none", idle=build_idle(cfg))


def test_live_controls_without_a_display_or_microphone_say_so_in_one_line_each(monkeypatch, capsys):
    """`vcam-me run` wiring: the idle face gets the engine; no display → hotkeys off; no
    microphone → the idle jaw does without; both one line, and the run goes on."""
    import dataclasses

    from vcam_me.app import live_controls
    from vcam_me.config import load_config

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(cfg, idle=dataclasses.replace(cfg.idle, microphone="no-such-microphone-vcam-me-test"))
    expression = _live_expression(cfg)
    with live_controls(cfg, expression) as idle:
        assert idle is expression.idle and idle.engine is expression.engine
        assert idle.voice_level is None
        idle.toggle_pause()
        assert expression.state_at(0).face_present is False
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("vcam-me: hotkeys off:") and "display" in line for line in lines), lines
    assert any("no-such-microphone-vcam-me-test" in line and "jaw" in line for line in lines), lines
    assert len(lines) == 2, lines


def test_no_hotkeys_option_and_bad_idle_types(monkeypatch, capsys):
    import dataclasses

    from vcam_me.app import live_controls
    from vcam_me.cli import build_parser
    from vcam_me.config import load_config
    from vcam_me.errors import ConfigError

    assert build_parser().parse_args(["run", "--no-hotkeys"]).no_hotkeys is True
    assert build_parser().parse_args(["run"]).no_hotkeys is False
    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(cfg, idle=dataclasses.replace(cfg.idle, voice_jaw=False))
    with live_controls(cfg, _live_expression(cfg), hotkeys=False):
        pass
    assert capsys.readouterr().err == "", "nothing to say when hotkeys are off by choice and the mic is not wanted"
    bad = dataclasses.replace(cfg, idle=dataclasses.replace(cfg.idle, micro_types=("smirk_of_doom",)))
    with pytest.raises(ConfigError, match="idle.micro_types: 'smirk_of_doom'"), live_controls(bad, _live_expression(bad)):
        pass


def test_render_keeps_the_avatar_alive_where_the_driving_video_loses_the_face(tmp_path, private_user_dirs,
                                                                             write_video):
    """A driving clip whose face goes away after 1 s: the rendered avatar goes on breathing,
    blinking and glancing (idle life) instead of freezing."""
    import av

    from vcam_me.app import main

    with av.open(str(BUNDLED_CLIP)) as src:
        frames = [f.to_ndarray(format="rgb24", width=640, height=360) for _, f in zip(range(24), src.decode(video=0))]
    frames += [np.full((360, 640, 3), 128, np.uint8)] * 120  # 5 s of an empty wall
    clip = write_video(frames, tmp_path / "face-then-wall.mp4", 24)
    out = tmp_path / "out.mp4"
    assert main(["render", "--avatar", str(REPO / "assets" / "avatars" / "sample"), "--driving", str(clip),
                 "--out", str(out), "--fps", "30", "--size", "320x180"]) == 0
    with av.open(str(out)) as c:
        rendered = [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]
    # From 3.3 s on (the face gone for 2 s, the start banner down), above the label band.
    faceless = [f[:120] for f in rendered[100:]]
    assert len(faceless) >= 70
    # Measured: an avatar left to decay to neutral drifts by 0.013 (codec noise) over these
    # frames; the idle one by 0.91 (sway, breathing, glances, blinks).
    drift = max(np.abs(f - faceless[0]).mean() for f in faceless)
    assert drift > 0.3, f"the avatar froze (largest change {drift:.3f})"


def test_the_avatar_list_skips_and_clears_what_a_killed_writer_left(private_user_dirs):
    """A staging folder of a killed set-up or import is never listed; once it is an hour old
    the next listing removes it, while a young one (maybe a write in progress) stays."""
    import time

    from vcam_me.app import avatar_choices, own_avatars_dir

    root = own_avatars_dir()
    old, young = root / ".me.1234.partial", root / ".you.5678.partial"
    for folder in (old, young):
        (folder / "network").mkdir(parents=True)
        (folder / "avatar.json").write_text("{}")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    assert [name for name, _ in avatar_choices()] == ["sample"]
    assert not old.exists() and young.exists()


@pytest.mark.parametrize("size", [(640, 480), (720, 720), (1280, 720)])
def test_the_renderer_frames_the_face_above_the_labels_badge(size, private_user_dirs):
    """The composition root gives the renderer the badge's top row: at any aspect the sample's
    chin is drawn above the badge the stamper puts on the same frames."""
    from vcam_me.app import BUNDLED_AVATAR, build_renderer, build_stamper, label_top_row, require_consent, resolve_avatar
    from vcam_me.avatar import mesh as M
    from vcam_me.avatar.renderer import CHIN_CLEARANCE
    from vcam_me.config import load_config

    cfg = load_config(None, use_user_config=False)
    avatar = resolve_avatar(str(BUNDLED_AVATAR), cfg)
    badge_top = build_stamper(cfg, size, require_consent(avatar, "render")).label.sprites_for(size).badge.rect[1]
    assert label_top_row(size, cfg) == badge_top
    chin_row = build_renderer(avatar, size, cfg).rest[M.CHIN, 1]
    assert chin_row <= badge_top - CHIN_CLEARANCE * size[1] + 1e-3


def test_an_avatar_driven_by_its_owner_is_drawn_as_measured(private_user_dirs):
    """``[avatar] driver``: a photo avatar is drawn for anyone (the basis's cross-identity gains
    and mixing), an avatar personalised by ``vcam-me setup`` for its owner (the motion as
    measured), and the setting overrides either way."""
    import dataclasses

    from vcam_me.app import BUNDLED_AVATAR, driven_by_owner, resolve_avatar, warp_renderer
    from vcam_me.avatar.basis import FEATURE_NAMES
    from vcam_me.config import load_config
    from vcam_me.types import AU_INDEX, ExpressionState

    cfg = load_config(None, use_user_config=False)
    as_owner = dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, driver="owner"))
    as_other = dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, driver="other"))
    photo = resolve_avatar(str(BUNDLED_AVATAR), cfg)

    class SetUpAvatar:  # what vcam-me setup leaves: an avatar that carries its own network
        def network_files(self):
            return {"fp32": Path("network/appearance.onnx")}

    assert cfg.avatar.driver == "auto"
    assert not driven_by_owner(photo, cfg) and driven_by_owner(SetUpAvatar(), cfg)
    assert driven_by_owner(photo, as_owner) and not driven_by_owner(SetUpAvatar(), as_other)

    commanded = {"AU7_L": 0.3, "AU12_R": 0.2, "AU2_L": 0.4}
    au = ExpressionState.neutral(0).au.copy()
    for name, value in commanded.items():
        au[AU_INDEX[name]] = value
    state = ExpressionState.neutral(0)
    state = ExpressionState(0, au, state.gaze, state.head_pose)
    own = warp_renderer(photo, (640, 360), as_owner).drive(state)
    other = warp_renderer(photo, (640, 360), cfg).drive(state)
    expected = np.zeros(len(FEATURE_NAMES), np.float32)
    for name, value in commanded.items():
        expected[FEATURE_NAMES.index(name)] = value
    np.testing.assert_allclose(own, expected, atol=1e-6)  # drawn as commanded, nothing added
    assert abs(other[FEATURE_NAMES.index("AU7_L")] - 0.3) > 0.1  # the gained draw differs
