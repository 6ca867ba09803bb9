"""The AU basis file: optional arrays (gains, cross-talk mixing) and their shape checks."""

from __future__ import annotations

import numpy as np
import pytest

from vcam_me.avatar import AUBasis
from vcam_me.avatar.basis import FEATURE_NAMES
from vcam_me.errors import ModelError
from vcam_me.types import NUM_LANDMARKS

N = len(FEATURE_NAMES)


def write_basis(path, **extra) -> None:
    np.savez(path, basis=np.zeros((N, NUM_LANDMARKS, 3), np.float32), feature_names=np.array(FEATURE_NAMES), **extra)


def test_mixing_is_the_identity_when_absent(tmp_path):
    write_basis(tmp_path / "b.npz")
    basis = AUBasis.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(basis.mixing, np.eye(N))
    np.testing.assert_array_equal(AUBasis.zeros().mixing, np.eye(N))


def test_mixing_is_loaded(tmp_path):
    mixing = np.eye(N, dtype=np.float32)
    mixing[1, 0] = -0.25
    write_basis(tmp_path / "b.npz", mixing=mixing)
    np.testing.assert_array_equal(AUBasis.load(tmp_path / "b.npz").mixing, mixing)


@pytest.mark.parametrize("bad", [np.eye(N - 1), np.eye(N)[:, :3], np.full((N, N), np.nan)])
def test_mixing_of_the_wrong_shape_is_a_model_error(tmp_path, bad):
    write_basis(tmp_path / "b.npz", mixing=bad.astype(np.float32))
    with pytest.raises(ModelError, match="mixing matrix"):
        AUBasis.load(tmp_path / "b.npz")


def test_shipped_basis_loads():
    basis = AUBasis.load()
    assert basis.mixing.shape == (N, N) and np.isfinite(basis.mixing).all()


def test_as_measured_drops_the_gains_and_mixing_and_keeps_the_rest():
    shipped = AUBasis.load()
    assert not np.allclose(shipped.gain, 1.0) and not np.allclose(shipped.mixing, np.eye(N))
    measured = shipped.as_measured()
    np.testing.assert_array_equal(measured.basis, shipped.basis)
    np.testing.assert_array_equal(measured.gain, np.ones(N))
    np.testing.assert_array_equal(measured.mixing, np.eye(N))
    np.testing.assert_array_equal(measured.pose_gain, shipped.pose_gain)
    np.testing.assert_array_equal(measured.pose_coupling, shipped.pose_coupling)
