"""ConsentGuard: the per-frame "may we still render this avatar?" answer for a running session.

The live pipeline calls :meth:`ConsentGuard.allowed` once per output frame. It is a few
comparisons on the hot path; the real check (:meth:`ConsentRegistry.check
<vcam_me.consent.registry.ConsentRegistry.check>`: read the record, verify the signature,
read the revocation list) runs only

* at start (:meth:`ConsentGuard.start`, or the first :meth:`allowed`);
* every ``recheck_interval_ms`` (default 2 minutes);
* at once after a revocation notice: :meth:`notify`, called by the registry when a record is
  revoked in this process (the guard subscribes in :meth:`for_registry`);
* when ``change_probe`` reports a change, polled every ``poll_interval_ms`` (default 1 s;
  one ``stat`` of the revocation list), which catches ``vcam-me consent revoke`` run in
  another process.

Expiry needs no re-check: after each successful check the guard turns the record's expiry
(wall clock) into a deadline on the session's monotonic clock, and refuses from that frame on.

A refusal latches: once :meth:`allowed` has returned ``False`` it stays ``False`` and
:attr:`reason` holds the one line to show. The app stops output; rendering again needs a new
session, which checks again from scratch.

Threads: :meth:`allowed` and :meth:`start` belong to the render thread; :meth:`notify` may be
called from any thread (it only sets a flag).

Cost, measured on the 2-core development machine under load: :meth:`allowed` ≈ 1.3 µs per
frame; a full re-check ≈ 0.3-0.5 ms (one Ed25519 verification), plus one verification per
revocation line appended since the last check. The very first check parses the whole
revocation list (≈ 0.2 ms per line), so call :meth:`start` before the first frame.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping

from vcam_me.consent.records import ConsentRecord, format_time, utc_now
from vcam_me.consent.registry import EXPIRED, TAMPERED, ConsentRegistry, Verdict

DEFAULT_RECHECK_INTERVAL_MS = 120_000
DEFAULT_POLL_INTERVAL_MS = 1_000
_NEVER = float("inf")


class ConsentGuard:
    """Re-verifies consent during a session; see the module docstring.

    Args:
        verify: runs the full check for a wall-clock time and returns its :class:`Verdict`.
        wall_clock: timezone-aware wall clock (expiry is wall-clock time).
        recheck_interval_ms: period of the full re-check on the session's monotonic clock.
        poll_interval_ms: period of ``change_probe``.
        change_probe: cheap function whose return value changes when the revocation list
            changes (``ConsentRegistry.change_stamp``); ``None`` disables polling.
        consent_id: the guarded ID, so :meth:`notify` can ignore other IDs' revocations.
    """

    def __init__(
        self,
        verify: Callable[[datetime], Verdict],
        *,
        wall_clock: Callable[[], datetime] = utc_now,
        recheck_interval_ms: int = DEFAULT_RECHECK_INTERVAL_MS,
        poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
        change_probe: Callable[[], object] | None = None,
        consent_id: int | None = None,
    ) -> None:
        if recheck_interval_ms <= 0 or poll_interval_ms <= 0:
            raise ValueError(
                f"intervals must be > 0 ms, got recheck {recheck_interval_ms}, poll {poll_interval_ms}"
            )
        self._verify = verify
        self._wall_clock = wall_clock
        self.recheck_interval_ms = int(recheck_interval_ms)
        self.poll_interval_ms = int(poll_interval_ms)
        self._probe = change_probe
        self.consent_id = consent_id
        self._verdict: Verdict | None = None
        self._denied = False
        self._notice = False
        self._next_check_ms: float = -_NEVER
        self._next_poll_ms: float = _NEVER
        self._deadline_ms: float = _NEVER
        self._stamp: object = None
        self._unsubscribe: Callable[[], None] | None = None
        #: How many full checks have run (for tests and the status display).
        self.checks = 0

    @classmethod
    def for_registry(
        cls,
        registry: ConsentRegistry,
        record_or_id: ConsentRecord | int | str | Path,
        avatar_hashes: Mapping[str, str],
        *,
        use: str | None = "live_call",
        wall_clock: Callable[[], datetime] = utc_now,
        recheck_interval_ms: int = DEFAULT_RECHECK_INTERVAL_MS,
        poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS,
    ) -> "ConsentGuard":
        """A guard for one avatar, checked against ``registry`` and told of its revocations."""
        hashes = dict(avatar_hashes)
        consent_id = record_or_id.consent_id if isinstance(record_or_id, ConsentRecord) else None
        if isinstance(record_or_id, (int, str)):
            from vcam_me.consent.records import parse_consent_code

            try:
                consent_id = parse_consent_code(record_or_id)
            except (TypeError, ValueError):
                consent_id = None  # the check itself will answer "unknown"
        guard = cls(
            lambda now: registry.check(record_or_id, hashes, now, use=use),
            wall_clock=wall_clock,
            recheck_interval_ms=recheck_interval_ms,
            poll_interval_ms=poll_interval_ms,
            change_probe=registry.change_stamp,
            consent_id=consent_id,
        )
        guard._unsubscribe = registry.subscribe(guard.notify)
        return guard

    # ------------------------------------------------------------------ state

    @property
    def verdict(self) -> Verdict | None:
        """The latest verdict (``None`` before the first check)."""
        return self._verdict

    @property
    def reason(self) -> str:
        """One line for the user: why rendering stopped, or that it is allowed."""
        return self._verdict.reason if self._verdict is not None else "consent not checked yet"

    @property
    def denied(self) -> bool:
        return self._denied

    # ------------------------------------------------------------------ API

    def start(self, now_ms: int) -> Verdict:
        """Run the check now (session start) and return its verdict."""
        self._check(now_ms)
        assert self._verdict is not None
        return self._verdict

    def allowed(self, now_ms: int) -> bool:
        """Whether the frame at ``now_ms`` (session monotonic clock) may show the avatar."""
        if self._denied:
            return False
        if self._notice or now_ms >= self._next_check_ms:
            self._check(now_ms)
        elif now_ms >= self._deadline_ms:
            self._expire()
        elif now_ms >= self._next_poll_ms:
            self._next_poll_ms = now_ms + self.poll_interval_ms
            if self._probe is not None and self._probe() != self._stamp:
                self._check(now_ms)
        return not self._denied

    def notify(self, consent_id: int | None = None) -> None:
        """A revocation (or other change) happened: re-check before the next frame.

        ``consent_id``: the revoked ID; notices for other IDs are ignored when the guarded ID
        is known. Safe to call from any thread.
        """
        if consent_id is None or self.consent_id is None or consent_id == self.consent_id:
            self._notice = True

    def close(self) -> None:
        """Stop listening to the registry. Idempotent."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __enter__(self) -> "ConsentGuard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check(self, now_ms: int) -> None:
        self._notice = False
        stamp = self._probe() if self._probe is not None else None  # before the check: no missed change
        wall = self._wall_clock()
        try:
            verdict = self._verify(wall)
        except (OSError, ValueError) as err:  # fail closed, with the reason
            verdict = Verdict(False, TAMPERED, f"consent check failed: {err}", self.consent_id)
        self.checks += 1
        self._verdict = verdict
        if self.consent_id is None:
            self.consent_id = verdict.consent_id
        if not verdict.ok:
            self._denied = True
            return
        self._stamp = stamp
        self._next_check_ms = now_ms + self.recheck_interval_ms
        self._next_poll_ms = now_ms + self.poll_interval_ms if self._probe is not None else _NEVER
        if verdict.record is not None:
            self._deadline_ms = now_ms + (verdict.record.expires_at - wall).total_seconds() * 1000.0

    def _expire(self) -> None:
        record = self._verdict.record if self._verdict is not None else None
        when = format_time(record.expires_at) if record is not None else "now"
        code = record.code if record is not None else "?"
        self._verdict = Verdict(False, EXPIRED, f"consent record {code} expired at {when}", self.consent_id, record)
        self._denied = True
