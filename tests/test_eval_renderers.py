"""`vcam-me eval renderers` and `vcam-me eval identity` for real, on a short cut of the bundled clip:
personalisation on its first part, three renderers scored on the held-back rest, re-tracked by
MediaPipe and described by dlib (the image-quality helpers are unit-tested in tests/evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vcam_me.app import BUNDLED_AVATAR, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_clip(bundled_clip_cut) -> Path:
    return bundled_clip_cut(100, 24)


def test_eval_renderers_scores_three_renderers_on_held_back_frames(short_clip, private_user_dirs):
    out = private_user_dirs / "renderers.json"
    code = main(["eval", "renderers", "--driving", str(short_clip), "--steps", "2", "--size", "640x360",
                 "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    row = result["clips"]["short.mp4"]
    assert row["reference_frame"] < row["first_held_back_frame"], "the avatar comes from the first part"
    for name in ("warp_only", "generic", "personalised", "warp_for_owner"):
        r = row[name]
        assert r["quality_frames"] > 15
        for key in ("face_psnr", "mouth_psnr", "eyes_psnr"):
            assert 5 < r[key] < 60
        assert 0 < r["face_ssim"] <= 1 and r["identity_to_avatar_mean"] is not None
    # the person's own held-back frames, described at the same frames as the renders
    real = row["real_frames"]
    assert real["frames"] >= 3 and 0 < real["identity_to_avatar_mean"] <= real["identity_to_avatar_max"] < 0.6
    assert set(result["summary"]) == {"warp_only", "generic", "personalised", "warp_for_owner", "real_frames"}
    # the person's own motion drawn as measured is not the gained warp
    assert row["warp_for_owner"]["face_psnr"] != row["warp_only"]["face_psnr"]


def test_eval_identity_compares_the_render_with_avatar_and_driver(short_clip, private_user_dirs):
    out = private_user_dirs / "identity.json"
    code = main(["eval", "identity", "--driving", str(short_clip), "--frames", "20", "--size", "640x360",
                 "--avatar", str(BUNDLED_AVATAR), "--out", str(out)])
    result = json.loads(out.read_text())
    assert code == (0 if result["all_keep_identity"] else 1)
    sample = result["avatars"][BUNDLED_AVATAR.name]["short.mp4"]
    for kind in ("warp_only", "network"):
        assert sample[kind]["to_avatar"] is not None and sample[kind]["to_driver"] is not None
        # the bundled sample and the bundled clip are two different people
        assert sample[kind]["keeps_identity"]
