import time

import pytest

from vcam_me.clock import Pacer, RateMeter, now_ms


def test_pacer_keeps_rate_without_drift():
    pacer = Pacer(100)
    ticks = [pacer.wait() for _ in range(30)]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert sum(gaps) == pytest.approx(290, abs=3)  # schedule-based: no accumulated drift


def test_pacer_reanchors_instead_of_bursting():
    pacer = Pacer(100)
    pacer.wait()
    time.sleep(0.05)  # fell behind by 5 periods
    t0 = time.monotonic()
    pacer.wait()
    pacer.wait()
    assert time.monotonic() - t0 >= 0.008  # the next tick is a full period later, no burst


def test_pacer_shift_is_bounded():
    pacer = Pacer(50)  # 20 ms period
    pacer.wait()
    before = pacer.next_tick_ns()
    pacer.shift(-15_000_000)
    assert before - pacer.next_tick_ns() == 5_000_000  # at most a quarter period
    with pytest.raises(ValueError):
        Pacer(0)


def test_rate_meter_and_clock():
    meter = RateMeter(smoothing=0.5)
    for _ in range(5):
        meter.tick()
        time.sleep(0.01)
    assert 40 < meter.fps < 110
    assert isinstance(now_ms(), int)
