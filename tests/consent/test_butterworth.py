"""The numpy Butterworth band-pass: its frequency response where a Butterworth's must be, the
block filter against a plain per-sample recursion, and both against scipy.signal (coefficients
and output) where scipy is installed."""

from __future__ import annotations

import numpy as np
import pytest

from vcam_me.consent import butterworth
from vcam_me.consent.butterworth import BLOCK, butter_bandpass, sosfilt

#: Coefficients and outputs agree with scipy's to this, relative to the largest value.
SCIPY_RELATIVE_TOLERANCE = 1e-12
#: The block filter against the per-sample recursion (float64 rounding over a long signal).
RECURSION_TOLERANCE = 1e-12

DESIGNS = [(4, 100.0, 3800.0, 16_000), (4, 100.0, 3600.0, 8_000), (2, 300.0, 3000.0, 44_100),
           (6, 50.0, 7000.0, 16_000), (2, 10.0, 20.0, 100)]


def _response(sections: np.ndarray, f_hz: np.ndarray, rate: float) -> np.ndarray:
    """Complex frequency response of the cascade at ``f_hz``."""
    z1 = np.exp(-2j * np.pi * f_hz / rate)  # z⁻¹
    h = np.ones_like(z1)
    for b0, b1, b2, a0, a1, a2 in sections:
        h *= (b0 + b1 * z1 + b2 * z1**2) / (a0 + a1 * z1 + a2 * z1**2)
    return h


def _per_sample(sections: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The transposed direct form II, one sample at a time: the definition the blocks must match."""
    y = np.asarray(x, np.float64).copy()
    for b0, b1, b2, a0, a1, a2 in sections / sections[:, 3:4]:
        s0 = s1 = 0.0
        out = np.empty_like(y)
        for i, v in enumerate(y):
            out[i] = b0 * v + s0
            s0 = b1 * v - a1 * out[i] + s1
            s1 = b2 * v - a2 * out[i]
        y = out
    return y


@pytest.mark.parametrize(("order", "low", "high", "rate"), DESIGNS)
def test_the_response_is_a_butterworth_band_pass(order, low, high, rate):
    sections = butter_bandpass(order, low, high, rate)
    assert sections.shape == (order, 6)
    np.testing.assert_allclose(np.abs(_response(sections, np.array([low, high]), rate)), 2**-0.5, rtol=1e-9)
    centre = np.sqrt(np.tan(np.pi * low / rate) * np.tan(np.pi * high / rate))  # pre-warped geometric centre
    peak = np.abs(_response(sections, np.array([rate / np.pi * np.arctan(centre)]), rate))
    np.testing.assert_allclose(peak, 1.0, rtol=1e-9)
    assert np.abs(_response(sections, np.array([0.0, rate / 2]), rate)).max() < 1e-9  # zeros at DC and Nyquist
    # stable: every pole inside the unit circle
    assert np.all(sections[:, 5] < 1) and np.all(np.abs(sections[:, 4]) < 1 + sections[:, 5])


@pytest.mark.parametrize("n", [0, 1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7, 2000])
def test_the_block_filter_equals_the_per_sample_recursion(n):
    sections = butter_bandpass(4, 100.0, 3800.0, 16_000)
    x = np.random.default_rng(n).normal(size=n)
    expected = _per_sample(sections, x)
    got = sosfilt(sections, x)
    assert got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=RECURSION_TOLERANCE * max(1.0, np.abs(expected).max(initial=0)))


def test_a_sharp_filter_over_many_blocks_stays_close_to_the_recursion():
    """Poles near the unit circle (5 Hz wide at 48 kHz: |p| = 0.99975) carry state over many
    blocks, where the block-start states' doubling does its work. The block products' rounding
    grows with 1/(1 − |p|) (about 4000 here; 50 for the voice filter), so the bound is looser
    than for the voice filter: measured 3.5e-12 for a unit impulse (scipy's recursion 5e-16)."""
    sections = butter_bandpass(2, 20.0, 25.0, 48_000)
    x = np.zeros(6000)
    x[0] = 1.0
    expected = _per_sample(sections, x)
    assert np.abs(expected).max() > 1e-4  # the response is there to compare
    np.testing.assert_allclose(sosfilt(sections, x), expected, rtol=0, atol=1e-11)


def test_negligible_state_propagation_is_cut_short(monkeypatch):
    """The doubling stops when the transition matrix is negligible; with the cut moved to 0
    (never cut) the output is the same."""
    sections = butter_bandpass(4, 100.0, 3800.0, 16_000)
    x = np.random.default_rng(3).normal(size=20_000)
    cut = sosfilt(sections, x)
    monkeypatch.setattr(butterworth, "NEGLIGIBLE", 0.0)
    np.testing.assert_allclose(cut, sosfilt(sections, x), rtol=0, atol=1e-13)


@pytest.mark.parametrize(("order", "low", "high", "rate"), [
    (3, 100, 3800, 16_000), (0, 100, 3800, 16_000), (4, 0, 3800, 16_000), (4, 3800, 100, 16_000),
    (4, 100, 8000, 16_000),
])
def test_bad_designs_are_refused(order, low, high, rate):
    with pytest.raises(ValueError):
        butter_bandpass(order, low, high, rate)


def test_bad_sections_are_refused():
    with pytest.raises(ValueError, match=r"\(S, 6\)"):
        sosfilt(np.ones((2, 5)), np.ones(10))
    with pytest.raises(ValueError, match="a0"):
        sosfilt(np.zeros((1, 6)), np.ones(10))


@pytest.mark.parametrize(("order", "low", "high", "rate"), DESIGNS)
def test_coefficients_equal_scipys(order, low, high, rate):
    signal = pytest.importorskip("scipy.signal", reason="scipy (the [dev] extra) is the reference; not installed")
    theirs = signal.butter(order, (low, high), btype="bandpass", fs=rate, output="sos")
    ours = butter_bandpass(order, low, high, rate)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=SCIPY_RELATIVE_TOLERANCE * np.abs(theirs).max())


def test_output_equals_scipys_sosfilt():
    signal = pytest.importorskip("scipy.signal", reason="scipy (the [dev] extra) is the reference; not installed")
    rng = np.random.default_rng(0)
    x = rng.normal(size=16_000 * 5)
    for design in DESIGNS[:3]:
        sections = butter_bandpass(*design)
        theirs = signal.sosfilt(sections, x)
        np.testing.assert_allclose(sosfilt(sections, x), theirs, rtol=0,
                                   atol=SCIPY_RELATIVE_TOLERANCE * np.abs(theirs).max())
