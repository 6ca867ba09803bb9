"""Plain helpers shared by tests in several folders (fixtures live in the conftest files).

Import them relatively, as the rest of the suite imports from its conftest files:
``from .helpers import wait_until`` in ``tests/``, ``from ..helpers import wait_until`` one
folder down.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# How long a wait gives up after unless the call says otherwise. It only decides how long a
# failing test hangs before it fails; generous, because the live-session tests share a busy
# 2-core machine with MediaPipe and the avatar.
WAIT_TIMEOUT_S = 30.0


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_TIMEOUT_S, *, poll_s: float = 0.01) -> bool:
    """Poll ``condition`` every ``poll_s`` seconds until it is true (→ True) or ``timeout_s``
    has passed (→ whether it is true at that last look). Meant for ``assert wait_until(...)``
    on work that other threads or processes do."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(poll_s)
    return bool(condition())
