"""ConsentGuard: revocation and expiry stop a running session at once; the per-frame call is cheap."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vcam_me.consent.guard import ConsentGuard
from vcam_me.consent.records import attested_licence
from vcam_me.consent.registry import EXPIRED, REVOKED, TAMPERED, VALID, ConsentRegistry, Verdict

START = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
HASHES = {"reference.png": "1" * 64, "network.onnx": "2" * 64}
FRAME_MS = 16


class FakeWallClock:
    """Wall clock that the test moves together with the session's monotonic milliseconds."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def at(self, now_ms: int) -> int:
        self.now = START + timedelta(milliseconds=now_ms)
        return now_ms


@pytest.fixture
def registry(tmp_path: Path) -> ConsentRegistry:
    return ConsentRegistry.open(tmp_path / "consent")


def add_record(registry: ConsentRegistry, *, valid_days: int = 90):
    record = attested_licence(
        key=registry.issuer, avatar=HASHES, licence="own face", operator="Alex", subject_name="Alex",
        now=START, valid_days=valid_days,
    )
    registry.add(record)
    return record


def test_allowed_and_cheap_between_checks(registry: ConsentRegistry) -> None:
    record = add_record(registry)
    clock = FakeWallClock()
    with ConsentGuard.for_registry(registry, record.code, HASHES, wall_clock=clock) as guard:
        verdict = guard.start(0)
        assert verdict.ok and verdict.status == VALID and guard.checks == 1
        frames = range(0, 60_000, FRAME_MS)  # one minute at 60 fps
        assert all(guard.allowed(clock.at(t)) for t in frames)
        assert guard.checks == 1  # no full re-check inside the 2-minute interval
        t0 = time.perf_counter()
        for t in range(60_000, 60_000 + 10_000 * FRAME_MS, FRAME_MS):
            guard.allowed(t)
        per_call_us = (time.perf_counter() - t0) / 10_000 * 1e6
        assert per_call_us < 20, f"allowed() costs {per_call_us:.1f} µs per frame"


def test_periodic_recheck(registry: ConsentRegistry) -> None:
    record = add_record(registry)
    clock = FakeWallClock()
    guard = ConsentGuard.for_registry(registry, record.code, HASHES, wall_clock=clock, recheck_interval_ms=120_000)
    assert guard.allowed(clock.at(0)) and guard.checks == 1  # first call checks (start)
    assert guard.allowed(clock.at(119_999)) and guard.checks == 1
    assert guard.allowed(clock.at(120_000)) and guard.checks == 2
    assert guard.allowed(clock.at(240_016)) and guard.checks == 3


def test_revoke_in_process_stops_the_next_frame(registry: ConsentRegistry) -> None:
    record = add_record(registry)
    clock = FakeWallClock()
    guard = ConsentGuard.for_registry(registry, record.code, HASHES, wall_clock=clock, poll_interval_ms=10**9)
    assert guard.start(0).ok
    assert guard.allowed(clock.at(FRAME_MS))
    registry.revoke(record.code, "subject withdrew consent", clock())
    assert not guard.allowed(clock.at(2 * FRAME_MS))  # the very next frame, no restart
    assert guard.verdict.status == REVOKED and guard.denied
    assert "revoked" in guard.reason and "subject withdrew consent" in guard.reason
    assert "\n" not in guard.reason


def test_revoke_from_another_process_is_seen_within_a_second(registry: ConsentRegistry) -> None:
    record = add_record(registry)
    clock = FakeWallClock()
    guard = ConsentGuard.for_registry(registry, record.code, HASHES, wall_clock=clock, poll_interval_ms=1_000)
    assert guard.start(0).ok
    other_process = ConsentRegistry.open(registry.folder)  # shares files, not listeners
    other_process.revoke(record.code, "revoked from the command line", clock())
    results = [(t, guard.allowed(clock.at(t))) for t in range(FRAME_MS, 2_000, FRAME_MS)]
    first_refused = next(t for t, ok in results if not ok)
    assert first_refused <= 1_000 + FRAME_MS
    assert guard.verdict.status == REVOKED


def test_expiry_stops_rendering_at_the_deadline_without_a_recheck(registry: ConsentRegistry) -> None:
    record = add_record(registry, valid_days=1)
    clock = FakeWallClock()
    clock.now = record.expires_at - timedelta(seconds=30)  # session starts 30 s before expiry
    guard = ConsentGuard(
        lambda now: registry.check(record.code, HASHES, now),
        wall_clock=clock,
        recheck_interval_ms=120_000,
    )
    assert guard.start(1_000).ok
    assert guard.allowed(30_999)
    checks = guard.checks
    assert not guard.allowed(31_000)  # 30 s later on the session clock: expired
    assert guard.checks == checks
    assert guard.verdict.status == EXPIRED and record.code in guard.reason


def test_refusal_latches(registry: ConsentRegistry) -> None:
    verdicts = [Verdict(False, REVOKED, "consent record X was revoked"), Verdict(True, VALID, "fine")]
    guard = ConsentGuard(lambda now: verdicts.pop(0), wall_clock=FakeWallClock(), recheck_interval_ms=1)
    assert not guard.allowed(0)
    assert not guard.allowed(10) and not guard.allowed(10_000)
    assert guard.checks == 1 and guard.reason == "consent record X was revoked"


def test_start_refuses_unknown_and_wrong_avatar(registry: ConsentRegistry) -> None:
    clock = FakeWallClock()
    unknown = ConsentGuard.for_registry(registry, "7KQ4M-2XD3J", HASHES, wall_clock=clock)
    assert unknown.start(0).status == "unknown" and not unknown.allowed(1)
    record = add_record(registry)
    swapped = {**HASHES, "network.onnx": "3" * 64}
    guard = ConsentGuard.for_registry(registry, record.code, swapped, wall_clock=clock)
    assert guard.start(0).status == "wrong-avatar" and not guard.allowed(1)


def test_failing_check_fails_closed() -> None:
    def broken(now: datetime) -> Verdict:
        raise OSError("disk unreadable")

    guard = ConsentGuard(broken, wall_clock=FakeWallClock())
    assert not guard.allowed(0)
    assert guard.verdict.status == TAMPERED and "disk unreadable" in guard.reason


def test_notice_for_another_id_is_ignored(registry: ConsentRegistry) -> None:
    record = add_record(registry)
    other = add_record(registry)
    clock = FakeWallClock()
    guard = ConsentGuard.for_registry(registry, record.code, HASHES, wall_clock=clock, poll_interval_ms=10**9)
    guard.start(0)
    registry.revoke(other.code, "not ours", clock())
    assert guard.allowed(FRAME_MS) and guard.checks == 1
    guard.notify()  # an unspecific notice always re-checks
    assert guard.allowed(2 * FRAME_MS) and guard.checks == 2


def test_close_unsubscribes(registry: ConsentRegistry) -> None:
    record = add_record(registry)
    clock = FakeWallClock()
    guard = ConsentGuard.for_registry(registry, record.code, HASHES, wall_clock=clock, poll_interval_ms=10**9)
    guard.start(0)
    guard.close()
    guard.close()  # idempotent
    registry.revoke(record.code, "after close", clock())
    assert guard.allowed(FRAME_MS)  # no notice reached it (polling disabled in this test)
    assert not guard.allowed(120_000)  # the periodic re-check still catches it


def test_bad_intervals() -> None:
    with pytest.raises(ValueError, match="intervals"):
        ConsentGuard(lambda now: Verdict(True, VALID, ""), recheck_interval_ms=0)
