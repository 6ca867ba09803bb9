"""The side balance as avatar data: stored, hash-bound, validated, and applied by the renderer."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vcam_me.avatar import Avatar, AvatarRenderer
from vcam_me.avatar.avatar import add_side_balance
from vcam_me.avatar.basis import FEATURE_NAMES
from vcam_me.avatar.side_balance import FILE_NAME, LATERAL_PAIRS, SideBalance
from vcam_me.consent.records import hash_avatar_folder
from vcam_me.errors import AvatarError
from vcam_me.types import AU_INDEX, ExpressionState

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "avatars" / "sample"


@pytest.fixture
def copy(tmp_path) -> Path:
    folder = tmp_path / "sample"
    shutil.copytree(SAMPLE, folder)
    return folder


def _without_balance(folder: Path) -> None:
    """Make ``folder`` an avatar that predates side balances (no file, no manifest entry)."""
    (folder / FILE_NAME).unlink()
    meta = json.loads((folder / "avatar.json").read_text(encoding="utf-8"))
    meta.pop("derived_files")
    meta.pop("manifest_sha256")
    (folder / "avatar.json").write_text(json.dumps(meta), encoding="utf-8")


def test_the_sample_ships_a_balance_for_its_weak_left_lip_stretcher():
    balance = Avatar.load(SAMPLE).side_balance
    assert balance is not None and balance.made_by.startswith("vcam-me avatar balance")
    assert balance.gains["AU20_L"] > 1.0 > balance.gains["AU20_R"]
    assert all(0.5 <= g <= 2.0 for g in balance.gains.values())


def test_an_avatar_without_a_balance_still_loads(copy):
    _without_balance(copy)
    avatar = Avatar.load(copy)
    assert avatar.side_balance is None
    AvatarRenderer.create(avatar, (320, 180))  # drawn with the shared basis alone


def test_a_damaged_balance_is_refused_by_its_hash(copy):
    path = copy / FILE_NAME
    path.write_text(path.read_text(encoding="utf-8").replace('"AU20_L": 1.', '"AU20_L": 0.'), encoding="utf-8")
    with pytest.raises(AvatarError, match="side_balance.json does not match its hash"):
        Avatar.load(copy)


def test_a_balance_listed_but_absent_reads_as_none(copy):
    # an archive carries only the files a consent binds: the balance is measured again
    (copy / FILE_NAME).unlink()
    assert Avatar.load(copy).side_balance is None


def test_added_balance_is_bound_and_leaves_consent_hashes_alone(copy):
    _without_balance(copy)
    before = hash_avatar_folder(copy)
    balance = SideBalance({"AU12_L": 1.25, "AU12_R": 0.8}, "abc", 0.3, {"AU12_L": 0.1}, "test")
    added = add_side_balance(Avatar.load(copy), balance)
    assert added.side_balance == balance
    again = Avatar.load(copy)
    assert again.side_balance == balance
    assert hash_avatar_folder(copy) == before  # what a consent record binds is unchanged


@pytest.mark.parametrize("gains, reason", [
    ({"AU12_L": 9.0}, "must be a number in"),
    ({"AU1": 1.2}, "not a left or right feature"),
    ({"AU12_L": "1.2"}, "must be a number in"),
    ({"AU12_L": float("nan")}, "must be a number in"),
])
def test_a_balance_with_bad_gains_is_refused(gains, reason):
    text = json.dumps({"format": "vcam_me.side_balance", "version": 1, "gains": gains})
    with pytest.raises(AvatarError, match=reason):
        SideBalance.from_json(text)


def test_the_renderer_scales_the_commanded_features_by_the_balance():
    sample = Avatar.load(SAMPLE)
    plain = AvatarRenderer.create(dataclasses.replace(sample, side_balance=None), (320, 180))
    balanced = AvatarRenderer.create(dataclasses.replace(sample, side_balance=SideBalance({"AU20_L": 1.5, "AU20_R": 0.5})),
                                     (320, 180))

    def state(**aus: float) -> ExpressionState:
        n = ExpressionState.neutral(0)
        au = n.au.copy()
        for name, value in aus.items():
            au[AU_INDEX[name]] = value
        return ExpressionState(0, au, n.gaze, n.head_pose)

    # a left feature at 0.2 is drawn as the plain renderer draws it at 0.3, mixing included
    np.testing.assert_allclose(balanced.drive(state(AU20_L=0.2)), plain.drive(state(AU20_L=0.3)), atol=1e-6)
    np.testing.assert_allclose(balanced.drive(state(AU20_R=0.2)), plain.drive(state(AU20_R=0.1)), atol=1e-6)
    np.testing.assert_allclose(balanced.drive(state(AU12_L=0.2)), plain.drive(state(AU12_L=0.2)), atol=1e-6)


def test_lateral_pairs_cover_every_sided_feature():
    sided = {n for n in FEATURE_NAMES if n.endswith(("_L", "_R"))}
    assert {n for pair in LATERAL_PAIRS for n in pair} == sided
