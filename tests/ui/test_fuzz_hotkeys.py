"""Fuzz the hotkey definitions: random and structured ``[hotkeys]`` tables, validated by the
configuration loader and then parsed by pynput's own ``HotKey.parse`` (through
:func:`~vcam_me.ui.hotkeys.parse_bindings`), give either bindings or one-line
:class:`~vcam_me.errors.VcamError` s, nothing else. pynput needs an X server: the module
starts its own Xvfb (as ``test_hotkeys.py`` does) and skips without one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcam_me.config import config_from_dict
from vcam_me.errors import VcamError
from vcam_me.expression.micro import MicroLibrary
from vcam_me.ui.hotkeys import load_keyboard, parse_bindings

from .conftest import own_xvfb

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

PARTS = ["<ctrl>", "<alt>", "<shift>", "<cmd>", "<f9>", "<f99>", "<esc>", "<space>", "<bogus>", "<>", "<ctrl",
         "ctrl>", "a", "A", "1", "é", "ß", "😀", "+", " ", "", "<<ctrl>>", "\x00", "\n", "<65>", "<0>", "<-1>",
         "<99999999999999999999>", "x" * 300]
combos = st.one_of(
    st.lists(st.sampled_from(PARTS), max_size=5).map("+".join),
    st.text(max_size=20),
)


@pytest.fixture(scope="module")
def keyboard() -> Iterator:
    with own_xvfb() as display, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", display)
        mp.delenv("WAYLAND_DISPLAY", raising=False)
        yield load_keyboard()


@pytest.fixture(scope="module")
def types() -> tuple[str, ...]:
    return MicroLibrary.load().names


@FUZZ
@given(pause=combos | st.integers() | st.none(),
       bindings=st.dictionaries(combos, st.sampled_from(["brow_raise", "inner_brow", "pause", "nope", ""])
                                | st.integers(), max_size=4),
       tap=st.integers(-5, 5000) | st.floats(allow_nan=True))
def test_hotkey_tables_give_bindings_or_one_line_errors(keyboard, types, pause, bindings, tap) -> None:
    table = {"bindings": bindings, "tap_max_ms": tap}
    if pause is not None:
        table["pause"] = pause
    try:
        cfg = config_from_dict({"hotkeys": table})
        parsed = parse_bindings(cfg.hotkeys, keyboard, types)
    except VcamError as err:
        assert str(err) and "\n" not in str(err), repr(str(err))
        return
    assert all(b.keys for b in parsed)
    assert len({frozenset(b.keys) for b in parsed}) == len(parsed), "two bindings on one combination"
