"""The spotter and its scoring, on synthetic AU streams with known events."""

import numpy as np
import pytest

from vcam_me.evaluation import spotting as S
from vcam_me.types import AU_CHANNELS, AU_INDEX

FPS = 60


def _bump(t, start, onset, offset, peak):
    """Raised-cosine rise and fall, like an injected envelope."""
    y = np.zeros_like(t, dtype=float)
    rise = (t >= start) & (t < start + onset)
    y[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - start) / onset)
    fall = (t >= start + onset) & (t < start + onset + offset)
    y[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - start - onset) / offset)
    return peak * y


def _stream(seconds=12.0, noise=0.004, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FPS)) * 1000.0 / FPS
    au = 0.05 + noise * rng.standard_normal((len(t), len(AU_CHANNELS)))
    return t, au


def _log(type_, start, onset, offset, side, aus):
    return S.LoggedEvent(type_, start, start + onset, start + onset + offset, side, aus)


def test_base_names_and_sides():
    assert S.base_au("AU12_L") == "AU12" and S.base_au("AU17_lower") == "AU17" and S.base_au("AU1") == "AU1"
    assert S.channel_side("AU12_L") == "left" and S.channel_side("AU12_R") == "right" and S.channel_side("AU1") is None


def test_detrend_removes_slow_rises_and_keeps_brief_ones():
    t = np.arange(600) * 1000.0 / FPS
    slow = 0.3 * (1 - np.cos(2 * np.pi * t / 4000.0)) / 2  # a 4 s macro expression
    brief = _bump(t, 5850, 150, 200, 0.2)  # on top of the slow peak
    res = S.detrend(slow + brief, half=36)
    assert res.max() == pytest.approx(0.2, abs=0.03)
    assert np.abs(res[t < 5700]).max() < 0.03


def test_a_dip_does_not_raise_the_flat_stretch_beside_it():
    t = np.arange(300) * 1000.0 / FPS
    x = np.zeros_like(t) - _bump(t, 1000, 100, 100, 0.1)
    res = S.detrend(x, half=36)
    assert res.max() < 1e-9


def test_spots_injected_events_with_au_side_and_apex():
    t, au = _stream()
    control = au.copy()
    logged = [
        _log("suppressed_smile", 2000, 150, 200, "left", {"AU12_L": 1.0}),
        _log("inner_brow", 5000, 120, 180, "both", {"AU1": 1.0}),
        _log("contempt", 8000, 160, 220, "right", {"AU14_R": 1.0}),
    ]
    au[:, AU_INDEX["AU12_L"]] += _bump(t, 2000, 150, 200, 0.15)
    au[:, AU_INDEX["AU12_R"]] += _bump(t, 2000, 150, 200, 0.03)  # tracker cross-talk
    au[:, AU_INDEX["AU1"]] += _bump(t, 5000, 120, 180, 0.12)
    au[:, AU_INDEX["AU14_R"]] += _bump(t, 8000, 160, 220, 0.1)
    sigma = S.noise_sigma(S.residuals(control, t))
    spotted = S.spot(au, t, AU_CHANNELS, sigma)
    result = S.score(logged, spotted)
    assert result.true_positives == 3 and result.f1 == 1.0
    assert result.au_side_accuracy == 1.0
    assert result.apex_error_ms_median <= 20


def test_wrong_side_and_missed_events_are_counted():
    t, au = _stream()
    logged = [
        _log("suppressed_smile", 2000, 150, 200, "left", {"AU12_L": 1.0}),
        _log("inner_brow", 6000, 150, 200, "both", {"AU1": 1.0}),  # not rendered at all
    ]
    au[:, AU_INDEX["AU12_R"]] += _bump(t, 2000, 150, 200, 0.15)  # drawn on the wrong side
    sigma = S.noise_sigma(S.residuals(au, t))
    result = S.score(logged, S.spot(au, t, AU_CHANNELS, sigma))
    assert result.true_positives == 1 and result.recall == 0.5
    assert result.au_side_accuracy == 0.0


def test_a_shifted_interval_fails_the_iou_rule():
    g = _log("x", 1000, 150, 150, "both", {"AU1": 1.0})
    near = S.SpottedEvent(1040, 1190, 1340, ("AU1",), "both", 3.0)
    far = S.SpottedEvent(1200, 1350, 1500, ("AU1",), "both", 3.0)
    assert S.score([g], [near]).true_positives == 1
    assert S.score([g], [far]).true_positives == 0


def test_quiet_stream_has_no_events_and_blinks_are_ignored():
    t, au = _stream(seed=3)
    au[:, AU_INDEX["AU43_L"]] += _bump(t, 3000, 80, 150, 0.6)
    au[:, AU_INDEX["AU43_R"]] += _bump(t, 3000, 80, 150, 0.6)
    sigma = S.noise_sigma(S.residuals(_stream(seed=4)[1], t))
    assert S.spot(au, t, AU_CHANNELS, sigma) == []


def test_no_face_rows_do_not_make_events():
    t, au = _stream()
    au[300:330] = np.nan
    sigma = S.noise_sigma(S.residuals(_stream(seed=5)[1], t))
    assert S.spot(au, t, AU_CHANNELS, sigma) == []


def test_au_and_side_is_judged_on_the_leading_au():
    contempt = _log("contempt_dimpler", 1000, 150, 200, "right", {"AU14_R": 1.0, "AU12_R": 0.5})
    read_as_smile = S.SpottedEvent(1000, 1150, 1350, ("AU12",), "right", 4.0,
                                   (S.ChannelEvent("AU12_R", 1000, 1150, 1350, 0.12, 4.0),))
    read_as_brow = S.SpottedEvent(1000, 1150, 1350, ("AU2", "AU12"), "left", 5.0,
                                  (S.ChannelEvent("AU2_L", 1000, 1150, 1350, 0.2, 5.0), S.ChannelEvent("AU12_R", 1000, 1150, 1350, 0.1, 3.0)))
    wrong_side = S.SpottedEvent(1000, 1150, 1350, ("AU12",), "left", 4.0,
                                (S.ChannelEvent("AU12_L", 1000, 1150, 1350, 0.12, 4.0),))
    assert S.au_and_side_correct(contempt, read_as_smile)
    assert not S.au_and_side_correct(contempt, read_as_brow)
    assert not S.au_and_side_correct(contempt, wrong_side)


def test_a_lid_raise_is_read_from_eyeblink_falling_below_rest():
    # MediaPipe's eyeWide hardly moves on a warped face; the lids opening wider lower eyeBlink
    t, au = _stream()
    control = au.copy()
    au[:, AU_INDEX["AU43_L"]] -= _bump(t, 3000, 160, 220, 0.07)
    au[:, AU_INDEX["AU43_R"]] -= _bump(t, 3000, 160, 220, 0.06)
    spotted = S.spot(au, t, AU_CHANNELS, S.noise_sigma(S.residuals(control, t)))
    assert len(spotted) == 1
    event = spotted[0]
    assert event.aus == ("AU5",) and event.side == "both"
    assert {c.read_from for c in event.channels} == {"AU43_L", "AU43_R"}
    logged = _log("lid_raise", 3000, 160, 220, "both", {"AU5_L": 1.0, "AU5_R": 1.0})
    assert S.score([logged], spotted).au_side_accuracy == 1.0


def test_a_fall_counts_for_the_side_as_the_share_of_its_resting_value():
    t, au = _stream()
    # the left outer brow rests twice as high as the right one: a lowered brow takes the
    # same share off both, which is twice as much on the left
    au[:, AU_INDEX["AU2_L"]] += 0.25
    au[:, AU_INDEX["AU2_R"]] += 0.10
    control = au.copy()
    au[:, AU_INDEX["AU2_L"]] -= _bump(t, 3000, 150, 150, 0.15)
    au[:, AU_INDEX["AU2_R"]] -= _bump(t, 3000, 150, 150, 0.075)
    sigma = S.noise_sigma(S.residuals(control, t))
    spotted = S.spot(au, t, AU_CHANNELS, sigma)
    assert [(e.aus, e.side) for e in spotted] == [(("AU4",), "both")]
    assert sorted(round(c.relative, 1) for c in spotted[0].channels) == [0.5, 0.5]
    # the same on a difference of two renders: the control render says where the brows rest
    diff = au - control
    spotted = S.spot(diff, t, AU_CHANNELS, sigma, level=control)
    assert [(e.aus, e.side) for e in spotted] == [(("AU4",), "both")]
    # one brow alone
    au = control.copy()
    au[:, AU_INDEX["AU2_L"]] -= _bump(t, 3000, 150, 150, 0.15)
    assert [(e.aus, e.side) for e in S.spot(au, t, AU_CHANNELS, sigma)] == [(("AU4",), "left")]


def test_an_event_spans_all_its_channels():
    t, au = _stream()
    control = au.copy()
    au[:, AU_INDEX["AU4_L"]] += _bump(t, 3000, 150, 200, 0.15)
    au[:, AU_INDEX["AU4_R"]] += _bump(t, 3000, 150, 200, 0.15)
    au[:, AU_INDEX["AU7_L"]] += _bump(t, 3060, 150, 200, 0.06)  # read through other landmarks, a little later
    spotted = S.spot(au, t, AU_CHANNELS, S.noise_sigma(S.residuals(control, t)))
    assert len(spotted) == 1 and spotted[0].aus[0] == "AU4" and "AU7" in spotted[0].aus
    by_channel = {c.channel: c for c in spotted[0].channels}
    assert spotted[0].start_ms == min(c.start_ms for c in by_channel.values())
    assert spotted[0].end_ms == by_channel["AU7_L"].end_ms > by_channel["AU4_L"].end_ms
    assert spotted[0].apex_ms == pytest.approx(3150, abs=20)


def test_a_falling_channel_that_reads_no_au_is_not_an_event():
    t, au = _stream()
    control = au.copy()
    au[:, AU_INDEX["AU12_L"]] -= _bump(t, 3000, 150, 200, 0.15)  # a lip corner briefly lowered
    assert S.spot(au, t, AU_CHANNELS, S.noise_sigma(S.residuals(control, t))) == []


def test_a_side_just_under_its_threshold_still_counts_as_moved():
    t, au = _stream(noise=0.002)
    control = au.copy()
    au[:, AU_INDEX["AU7_L"]] += _bump(t, 3000, 160, 220, 0.045)
    au[:, AU_INDEX["AU7_R"]] += _bump(t, 3000, 160, 220, 0.027)  # under the 0.03 floor
    spotted = S.spot(au, t, AU_CHANNELS, S.noise_sigma(S.residuals(control, t)))
    assert [c.channel for c in spotted[0].channels] == ["AU7_L"]
    assert spotted[0].side == "both"
    au[:, AU_INDEX["AU7_R"]] = control[:, AU_INDEX["AU7_R"]]  # now only the left moves
    assert S.spot(au, t, AU_CHANNELS, S.noise_sigma(S.residuals(control, t)))[0].side == "left"


@pytest.mark.parametrize(("n", "half"), [(1, 3), (7, 3), (100, 36), (20_000, 36), (50, 1)])
def test_running_median_is_the_median_of_each_edge_padded_window(n, half, monkeypatch):
    x = np.random.default_rng(n).normal(size=n)
    monkeypatch.setattr(S, "_MEDIAN_CHUNK", 7)  # several chunks even for short input
    got = S.running_median(x, half)
    padded = np.concatenate([np.full(half, x[0]), x, np.full(half, x[-1])])
    for i in (0, n // 2, n - 1):
        assert got[i] == np.median(padded[i : i + 2 * half + 1])
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy (the [dev] extra) is the reference; not installed")
    np.testing.assert_array_equal(got, ndimage.median_filter(x, size=2 * half + 1, mode="nearest"))
