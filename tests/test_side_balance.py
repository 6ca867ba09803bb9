"""Measuring an avatar's side balance: the gain rule on given curves, and the real thing
(the sample drawn, re-tracked by MediaPipe, balanced)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vcam_me.avatar import Avatar, AvatarRenderer
from vcam_me.side_balance import (
    balance_gains,
    measure_side_balance,
    read_curves,
    tracker_reader,
)

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "avatars" / "sample"


def test_a_pair_where_neither_side_reads_is_left_alone():
    curves = {"AU14_L": {0.3: 0.004}, "AU14_R": {0.3: 0.01}}
    assert balance_gains(curves) == {}


def test_a_weaker_side_is_raised_and_the_stronger_lowered_alike():
    # linear read-backs, the left at half the right's slope: g_L = sqrt(2)
    values = (0.1, 0.2, 0.3, 0.45, 0.6)
    curves = {"AU20_L": {v: 0.5 * v for v in values}, "AU20_R": {v: 1.0 * v for v in values}}
    gains = balance_gains(curves)
    assert gains["AU20_L"] == pytest.approx(2 ** 0.5, rel=0.03)
    assert gains["AU20_L"] * gains["AU20_R"] == pytest.approx(1.0, rel=1e-3)


def test_gains_are_bounded():
    values = (0.1, 0.2, 0.3, 0.45, 0.6)
    curves = {"AU12_L": {v: 0.05 * v for v in values}, "AU12_R": {v: v for v in values}}
    gains = balance_gains(curves, bounds=(0.5, 2.0))
    assert gains["AU12_L"] == pytest.approx(2.0) and gains["AU12_R"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def read():
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    with FaceTracker.create(verified_model_path("face_landmarker"), mode="image") as tracker:
        yield tracker_reader(tracker)


def _ratio(curves, left: str, right: str, value: float) -> float:
    a, b = curves[left][value], curves[right][value]
    return min(a, b) / max(a, b)


@pytest.mark.slow
def test_balancing_the_sample_makes_its_lip_stretcher_read_alike_on_both_sides(read):
    """On the sample, a left lip stretch (AU20) at 0.2 reads at under half of a right one;
    measured and balanced, the two read within 25 % of each other."""
    sample = dataclasses.replace(Avatar.load(SAMPLE), side_balance=None)
    balance = measure_side_balance(sample, read)
    assert balance is not None and "AU20_L" in balance.gains
    values = (0.1, 0.2, 0.3)
    before = read_curves(AvatarRenderer.create(sample, (1280, 720)), read, values, probe=0.3, min_reading=0.02)
    after = read_curves(AvatarRenderer.create(dataclasses.replace(sample, side_balance=balance), (1280, 720)),
                        read, values, probe=0.3, min_reading=0.02)
    assert _ratio(before, "AU20_L", "AU20_R", 0.2) < 0.6
    assert _ratio(after, "AU20_L", "AU20_R", 0.2) > 0.75
    assert after["AU20_L"][0.2] > 0.1  # alike by reading, not by both vanishing


@pytest.mark.slow
def test_an_avatar_without_a_balance_gets_one_at_first_use(tmp_path):
    """The composition root measures and stores it (an avatar made before balances existed)."""
    import json
    import shutil

    from vcam_me import app
    from vcam_me.avatar.side_balance import FILE_NAME
    from vcam_me.config import load_config
    from vcam_me.consent.records import hash_avatar_folder

    folder = shutil.copytree(SAMPLE, tmp_path / "old")
    (folder / FILE_NAME).unlink()
    meta = json.loads((folder / "avatar.json").read_text(encoding="utf-8"))
    del meta["derived_files"], meta["manifest_sha256"]
    (folder / "avatar.json").write_text(json.dumps(meta), encoding="utf-8")
    bound = hash_avatar_folder(folder)
    avatar = app.with_side_balance(Avatar.load(folder), load_config())
    assert avatar.side_balance is not None and (folder / FILE_NAME).is_file()
    assert Avatar.load(folder).side_balance == avatar.side_balance
    assert hash_avatar_folder(folder) == bound
    assert app.with_side_balance(avatar, load_config()) is avatar  # stored and current: not measured again
