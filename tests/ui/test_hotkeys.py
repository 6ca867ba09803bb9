"""Global hotkeys: the tap/hold rules, pynput's own ``HotKey`` parsing of the configured combos,
and a real global listener (pynput's X backend) fed real key events through the XTEST
extension of an Xvfb server that these tests start.

pynput chooses its backend when it is first imported, from the display it finds then; the
module fixture points DISPLAY at its own Xvfb before that import and puts it back afterwards,
so no other test sees the display.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator

import pytest

from vcam_me.config import HotkeyOptions, load_config
from vcam_me.errors import ConfigError
from vcam_me.expression.idle import IdleAnimator
from vcam_me.expression.micro import MicroEngine, MicroLibrary
from vcam_me.ui.hotkeys import (
    PAUSE,
    Binding,
    HotkeyListener,
    HotkeysUnavailableError,
    TapHoldRecognizer,
    load_keyboard,
    parse_bindings,
)

from ..helpers import wait_until
from .conftest import own_xvfb

TYPES = ("brow_raise", "inner_brow", "suppressed_smile")


class RecordingTarget:
    """Seam: records what the hotkeys ask of the engine (the real engine is used below too)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def trigger(self, type_name, t_ms, *, source="api"):
        self.calls.append(("trigger", type_name, t_ms, source))

    def hold(self, type_name, t_ms, source="hotkey"):
        self.calls.append(("hold", type_name, t_ms, source))

    def release(self, type_name, t_ms):
        self.calls.append(("release", type_name, t_ms))


def _binding(action: str = "brow_raise", combo: str = "<ctrl>+<alt>+1") -> Binding:
    return Binding(combo, tuple(combo.split("+")), action)


# -- the tap/hold rules ----------------------------------------------------------------------
def test_a_tap_fires_exactly_one_micro_expression_on_release() -> None:
    target, b = RecordingTarget(), _binding()
    rules = TapHoldRecognizer(target, tap_max_ms=250)
    rules.activate(b, 1000)
    rules.activate(b, 1030)  # auto-repeat
    rules.poll({b.combo: b}, 1200)
    rules.deactivate(b, 1180)
    rules.poll({b.combo: b}, 1300)
    assert target.calls == [("trigger", "brow_raise", 1180, "hotkey")]


def test_a_hold_holds_until_release_and_repeats_add_nothing() -> None:
    target, b = RecordingTarget(), _binding()
    rules = TapHoldRecognizer(target, tap_max_ms=250)
    rules.activate(b, 1000)
    rules.poll({b.combo: b}, 1200)
    assert target.calls == []
    rules.poll({b.combo: b}, 1260)
    for t in range(1300, 2000, 33):  # the keyboard's auto-repeat while held
        rules.activate(b, t)
        rules.poll({b.combo: b}, t)
    rules.deactivate(b, 2000)
    assert target.calls == [("hold", "brow_raise", 1260, "hotkey"), ("release", "brow_raise", 2000)]


def test_a_hold_released_before_any_poll_is_still_a_hold() -> None:
    target, b = RecordingTarget(), _binding()
    rules = TapHoldRecognizer(target, tap_max_ms=250)
    rules.activate(b, 1000)
    rules.deactivate(b, 1400)
    assert target.calls == [("hold", "brow_raise", 1250, "hotkey"), ("release", "brow_raise", 1400)]


def test_a_release_racing_the_hold_timer_never_leaves_a_hold_behind() -> None:
    import threading

    b = _binding()
    for _ in range(300):
        target = RecordingTarget()
        rules = TapHoldRecognizer(target, tap_max_ms=250)
        rules.activate(b, 0)
        threads = [threading.Thread(target=rules.poll, args=({b.combo: b}, 300)),
                   threading.Thread(target=rules.deactivate, args=(b, 300))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert [c[0] for c in target.calls] == ["hold", "release"]


def test_the_pause_combo_toggles_once_per_press() -> None:
    target, b = RecordingTarget(), _binding(PAUSE, "<ctrl>+<alt>+p")
    toggles = []
    rules = TapHoldRecognizer(target, 250, on_pause=lambda: toggles.append(1))
    for t in (0, 30, 60, 500):
        rules.activate(b, t)
    rules.poll({b.combo: b}, 600)
    rules.deactivate(b, 700)
    rules.activate(b, 900)
    assert len(toggles) == 2 and target.calls == []


@pytest.mark.skipif(platform.system() != "Linux", reason="a display is only optional on Linux")
def test_no_display_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(HotkeysUnavailableError) as info:
        load_keyboard()
    assert "display" in str(info.value) and "\n" not in str(info.value)


def test_an_untrusted_macos_listener_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seam: a stand-in for pynput's macOS backend, which starts but hears nothing until the
    user allows the app in Accessibility (pynput then sets IS_TRUSTED = False)."""
    import types

    from vcam_me.ui import hotkeys

    class Listener:
        IS_TRUSTED = False

        def __init__(self, **callbacks) -> None:
            self.stopped = False

        def start(self) -> None: ...

        def wait(self) -> None: ...

        def stop(self) -> None:
            self.stopped = True

        def is_alive(self) -> bool:
            return False

    class HotKey:
        def __init__(self, keys, on_activate) -> None: ...

        @staticmethod
        def parse(combo: str) -> list[str]:
            return combo.split("+")

    fake = types.SimpleNamespace(Listener=Listener, HotKey=HotKey)
    monkeypatch.setattr(hotkeys, "load_keyboard", lambda: fake)
    with pytest.raises(HotkeysUnavailableError, match="Accessibility") as info:
        HotkeyListener.start(HotkeyOptions(), RecordingTarget())
    assert "\n" not in str(info.value)


# -- a real X server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def x_display() -> Iterator[str]:
    """An Xvfb server of our own; DISPLAY points at it for this module only."""
    with own_xvfb() as display, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", display)
        mp.delenv("WAYLAND_DISPLAY", raising=False)
        yield display


@pytest.fixture(scope="module")
def keyboard(x_display: str):
    return load_keyboard()


class XKeys:
    """Real key events, injected into the X server with XTEST (python-xlib, a pynput dependency)."""

    def __init__(self, display_name: str) -> None:
        from Xlib import XK, X
        from Xlib import display as xdisplay
        from Xlib.ext import xtest

        self._x, self._xk, self._xtest = X, XK, xtest
        self.display = xdisplay.Display(display_name)

    def _send(self, event_type, name: str) -> None:
        keycode = self.display.keysym_to_keycode(self._xk.string_to_keysym(name))
        self._xtest.fake_input(self.display, event_type, keycode)
        self.display.sync()
        # The server hands recorded events to listeners when it next flushes its output; a
        # second round trip a moment later makes that happen now rather than at the next key.
        time.sleep(0.005)
        self.display.sync()

    def press(self, *names: str) -> None:
        for name in names:
            self._send(self._x.KeyPress, name)

    def release(self, *names: str) -> None:
        for name in reversed(names):
            self._send(self._x.KeyRelease, name)

    def close(self) -> None:
        self.display.close()


@pytest.fixture
def keys(x_display: str) -> Iterator[XKeys]:
    k = XKeys(x_display)
    yield k
    k.close()


def _until_listening(listener: HotkeyListener, keys: XKeys) -> None:
    """pynput reports ready just before the X server starts recording for it: tap an unbound
    key until the listener hears one, so no key of the test is sent into that gap."""
    for _ in range(200):
        keys.press("Shift_R")
        keys.release("Shift_R")
        if wait_until(lambda: listener.presses_heard > 0, timeout_s=0.05):
            return
    raise AssertionError("the listener never heard a key")


def test_combos_are_parsed_by_pynput(keyboard) -> None:
    options = HotkeyOptions(bindings={"<ctrl>+<alt>+1": "brow_raise", "<shift>+<F9>": "inner_brow"})
    bindings = parse_bindings(options, keyboard, TYPES)
    by_action = {b.action: b for b in bindings}
    assert by_action["brow_raise"].keys == tuple(keyboard.HotKey.parse("<ctrl>+<alt>+1"))
    assert keyboard.Key.ctrl in by_action["brow_raise"].keys
    assert by_action[PAUSE].keys == tuple(keyboard.HotKey.parse("<ctrl>+<alt>+p"))
    assert [getattr(k, "vk", None) for k in by_action["inner_brow"].keys][-1] == keyboard.Key.f9.value.vk


@pytest.mark.parametrize(("bindings", "pause", "expected"), [
    ({"<ctrl>+<bogus>": "brow_raise"}, "<ctrl>+<alt>+p", r'hotkeys\.bindings\."<ctrl>\+<bogus>".*cannot read .<bogus>.'),
    ({"<ctrl>++1": "brow_raise"}, "<ctrl>+<alt>+p", r'hotkeys\.bindings\."<ctrl>\+\+1".*not a key combination'),
    ({"<ctrl>+<alt>+1": "no_such_type"}, "<ctrl>+<alt>+p", r"no_such_type.*no such expression type.*brow_raise"),
    ({"<ctrl>+<alt>+p": "brow_raise"}, "<ctrl>+<alt>+p", r"same combination as hotkeys\.pause"),
    ({}, "<ctrl>+<alt>+<nope>", r"hotkeys\.pause.*cannot read"),
])
def test_a_bad_binding_is_refused_with_its_key_and_reason(keyboard, bindings, pause, expected) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        parse_bindings(HotkeyOptions(pause=pause, bindings=bindings), keyboard, TYPES)
    assert "\n" not in str(info.value)


@pytest.fixture
def listening(x_display: str):
    """A started global listener driving a recording target; the idle animator takes pauses."""
    target = RecordingTarget()
    idle = IdleAnimator(seed=0)
    options = HotkeyOptions(tap_max_ms=400, bindings={"<ctrl>+<alt>+1": "brow_raise", "<ctrl>+<alt>+2": "inner_brow"})
    with HotkeyListener.start(options, target, on_pause=idle.toggle_pause, known_types=TYPES) as listener:
        yield target, idle, listener
    assert not listener._listener.is_alive(), "closing stops pynput's listener thread"


def test_a_real_tap_fires_exactly_one_micro_expression(listening, keys: XKeys) -> None:
    target, _, listener = listening
    _until_listening(listener, keys)
    keys.press("Control_L", "Alt_L", "1")
    keys.release("Control_L", "Alt_L", "1")
    assert wait_until(lambda: len(target.calls) >= 1)
    time.sleep(0.6)  # longer than tap_max_ms: a late hold would show up now
    assert [c[:2] + c[3:] for c in target.calls] == [("trigger", "brow_raise", "hotkey")]
    assert listener.recognizer.down == ()


def test_a_real_hold_holds_the_expression_through_auto_repeat(listening, keys: XKeys) -> None:
    target, _, listener = listening
    _until_listening(listener, keys)
    keys.press("Control_L", "Alt_L", "2")
    for _ in range(5):  # auto-repeat, as the X server sends it: more presses, no release
        time.sleep(0.03)
        keys.press("2")
    assert wait_until(lambda: any(c[0] == "hold" for c in target.calls))
    for _ in range(5):
        keys.press("2")
    time.sleep(0.2)
    keys.release("Control_L", "Alt_L", "2")
    assert wait_until(lambda: any(c[0] == "release" for c in target.calls))
    assert [c[:2] for c in target.calls] == [("hold", "inner_brow"), ("release", "inner_brow")]
    assert target.calls[0][2] < target.calls[1][2]


def test_the_real_pause_combo_pauses_and_resumes_idle(listening, keys: XKeys) -> None:
    target, idle, listener = listening
    _until_listening(listener, keys)
    keys.press("Control_L", "Alt_L", "p")
    keys.press("p")  # auto-repeat
    keys.release("Control_L", "Alt_L", "p")
    assert wait_until(lambda: idle.paused)
    keys.press("Control_L", "Alt_L", "p")
    keys.release("Control_L", "Alt_L", "p")
    assert wait_until(lambda: not idle.paused)
    assert target.calls == []


def test_a_bad_binding_stops_the_listener_from_starting(x_display: str) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        HotkeyListener.start(HotkeyOptions(bindings={"<ctrl>+<nope>": "brow_raise"}), RecordingTarget())



def test_the_default_bindings_name_library_types(keyboard) -> None:
    options = load_config(use_user_config=False).hotkeys
    bindings = parse_bindings(options, keyboard, MicroLibrary.load().names)
    assert len(bindings) == len(options.bindings) + 1  # and the pause combo


def test_real_keys_drive_the_real_engine_tap_and_hold(x_display: str, keys: XKeys) -> None:
    """Through the real engine: a tap logs exactly one micro-expression, a hold one held
    expression that ends when the keys are released."""
    engine = MicroEngine(MicroLibrary.load(), seed=4)
    options = HotkeyOptions(tap_max_ms=400, bindings={"<ctrl>+<alt>+1": "suppressed_smile", "<ctrl>+<alt>+3": "inner_brow"})
    with HotkeyListener.start(options, engine, known_types=engine.library.names) as listener:
        _until_listening(listener, keys)
        keys.press("Control_L", "Alt_L", "1")
        keys.release("Control_L", "Alt_L", "1")
        assert wait_until(lambda: len(engine.events) == 1)
        keys.press("Control_L", "Alt_L", "3")
        for _ in range(8):  # auto-repeat
            time.sleep(0.03)
            keys.press("3")
        assert wait_until(lambda: len(engine.events) == 2)
        time.sleep(0.2)
        keys.release("Control_L", "Alt_L", "3")
        assert wait_until(lambda: engine.events[-1].end_ms is not None)
        time.sleep(0.5)  # nothing more arrives late
    tap, hold = engine.events
    assert (tap.type, tap.held, tap.source) == ("suppressed_smile", False, "hotkey")
    assert tap.end_ms - tap.start_ms <= 500, "a micro-expression"
    assert (hold.type, hold.held, hold.source) == ("inner_brow", True, "hotkey")
    assert hold.end_ms > hold.start_ms


def test_vcam_me_run_wiring_starts_hotkeys_when_there_is_a_display(x_display: str, keys: XKeys, capsys) -> None:
    """app.live_controls, as `vcam-me run` uses it: with a display the hotkeys are on, the pause
    combo pauses the idle face and a tap reaches the composer's engine."""
    import dataclasses

    from vcam_me.app import build_expression, build_idle, live_controls

    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(cfg, idle=dataclasses.replace(cfg.idle, voice_jaw=False))
    expression = build_expression(cfg, offline=False, micro="none", idle=build_idle(cfg))
    with live_controls(cfg, expression) as idle:
        for _ in range(50):  # until the global hook hears the pause combo
            keys.press("Control_L", "Alt_L", "p")
            keys.release("Control_L", "Alt_L", "p")
            if wait_until(lambda: idle.paused, timeout_s=0.5):
                break
        assert idle.paused
        keys.press("Control_L", "Alt_L", "2")
        keys.release("Control_L", "Alt_L", "2")
        assert wait_until(lambda: len(expression.events) == 1)
    assert expression.events[0].type == cfg.hotkeys.bindings["<ctrl>+<alt>+2"]
    assert "vcam-me: hotkeys on" in capsys.readouterr().err


def test_a_combination_recorded_in_the_settings_dialog_is_one_pynput_accepts(keyboard) -> None:
    from vcam_me.ui.settings import qt_to_pynput

    options = HotkeyOptions(bindings={qt_to_pynput("Ctrl+Shift+F9"): "brow_raise", qt_to_pynput("Meta+PgDown"): "inner_brow"})
    actions = {b.combo: b.action for b in parse_bindings(options, keyboard, TYPES)}
    assert actions["<ctrl>+<shift>+<f9>"] == "brow_raise" and actions["<cmd>+<page_down>"] == "inner_brow"
