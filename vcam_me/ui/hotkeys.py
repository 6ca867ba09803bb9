"""Global hotkeys: tap a combo for a micro-expression, hold it for a held expression.

The mapping is configuration (``[hotkeys]``): combos in pynput's own syntax
(``"<ctrl>+<alt>+1"``), parsed by pynput's :meth:`keyboard.HotKey.parse`, each bound to an
expression type of the micro-expression library, plus one combo that pauses tracking.

* **tap** (the combo is released within ``tap_max_ms``): exactly one micro-expression,
  ``engine.trigger(type, t, source="hotkey")``, fired on release;
* **hold** (still down after ``tap_max_ms``): ``engine.hold(type, t)`` at the threshold,
  ``engine.release(type, t)`` when any key of the combo is let go;
* key auto-repeat while a combo is down fires nothing more (pynput's ``HotKey`` counts a key
  that is already down once).

pynput is imported only when hotkeys start: on Linux it needs an X server (a desktop
session), and without one the import fails. :func:`load_keyboard` turns that into one line.
The tap/hold logic (:class:`TapHoldRecognizer`) knows nothing of pynput, so it can be driven
by any source of key events; :class:`HotkeyListener` feeds it from a global
``pynput.keyboard.Listener``.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

from vcam_me.clock import now_ms
from vcam_me.config import HotkeyOptions
from vcam_me.errors import ConfigError, VcamError

log = logging.getLogger(__name__)

#: The action of the pause combo (not an expression type).
PAUSE = "pause"


class HotkeysUnavailableError(VcamError):
    """Global hotkeys cannot work here (no desktop session, or pynput cannot load)."""


class ExpressionTarget(Protocol):
    """What hotkeys drive: the micro-expression engine (or the composer that wraps it)."""

    def trigger(self, type_name: str, t_ms: float, *, source: str = "api") -> Any: ...

    def hold(self, type_name: str, t_ms: float, source: str = "hotkey") -> Any: ...

    def release(self, type_name: str, t_ms: float) -> Any: ...


@dataclass(frozen=True)
class Binding:
    """One combo: as written in the configuration, its keys as pynput parsed them, its action."""

    combo: str
    keys: tuple[Any, ...]
    action: str  # an expression type, or PAUSE


def load_keyboard():
    """``pynput.keyboard``, or :class:`HotkeysUnavailableError` with a one-line reason."""
    if platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise HotkeysUnavailableError("global hotkeys need a desktop session (no display: DISPLAY is not set)")
    try:
        from pynput import keyboard
    except ImportError as err:  # pynput raises ImportError for every backend it could not load
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HotkeysUnavailableError(f"global hotkeys unavailable: {reason}") from None
    return keyboard


def parse_bindings(options: HotkeyOptions, keyboard, known_types: Collection[str] | None = None) -> list[Binding]:
    """Parse every combo with pynput's ``HotKey.parse``; refuse a bad one with its key and reason.

    ``known_types``: the library's expression types; a binding to another name is refused.
    """
    entries: list[tuple[str, str, str]] = [("hotkeys.pause", options.pause, PAUSE)] if options.pause else []
    entries += [(f'hotkeys.bindings."{combo}"', combo, action) for combo, action in options.bindings.items()]
    bindings: list[Binding] = []
    seen: dict[frozenset, str] = {}
    for key, combo, action in entries:
        try:
            keys = tuple(keyboard.HotKey.parse(combo))
        except ValueError as err:  # pynput names the part it could not read
            part = f"cannot read {str(err)!r}" if str(err) else "it is empty"
            raise ConfigError(f'{key}: {combo!r} is not a key combination ({part}); write it like "<ctrl>+<alt>+1"') from None
        if not keys:
            raise ConfigError(f"{key}: the key combination is empty")
        if action != PAUSE and known_types is not None and action not in known_types:
            raise ConfigError(f"{key} = {action!r}: no such expression type (known: {', '.join(sorted(known_types))})")
        if frozenset(keys) in seen:
            raise ConfigError(f"{key}: {combo!r} is the same combination as {seen[frozenset(keys)]}")
        seen[frozenset(keys)] = key
        bindings.append(Binding(combo, keys, action))
    return bindings


@dataclass
class _Press:
    started_ms: int
    held: bool = False


class TapHoldRecognizer:
    """Turns combo activations and deactivations into taps and holds. Thread-safe.

    ``activate`` when the last key of a combo goes down, ``deactivate`` when any of its keys
    comes up, ``poll`` now and then while a combo is down (a timer does it): a combo still down
    ``tap_max_ms`` after it was activated becomes a hold. Times are render-clock ms.

    The listener thread and the timer thread both come here; each call runs whole under one
    lock, engine calls included, so a release can never overtake the hold it ends.
    """

    def __init__(self, target: ExpressionTarget, tap_max_ms: int, *, on_pause: Callable[[], Any] | None = None) -> None:
        self.target = target
        self.tap_max_ms = int(tap_max_ms)
        self.on_pause = on_pause
        self._lock = threading.Lock()
        self._down: dict[str, _Press] = {}

    def activate(self, binding: Binding, t_ms: int) -> None:
        with self._lock:
            if binding.combo in self._down:  # auto-repeat, or a second press of a held combo
                return
            self._down[binding.combo] = _Press(int(t_ms))
            if binding.action == PAUSE and self.on_pause is not None:
                self.on_pause()

    def deactivate(self, binding: Binding, t_ms: int) -> None:
        with self._lock:
            press = self._down.pop(binding.combo, None)
            if press is None or binding.action == PAUSE:
                return
            if press.held:
                self.target.release(binding.action, t_ms)
            elif t_ms - press.started_ms <= self.tap_max_ms:
                self.target.trigger(binding.action, t_ms, source="hotkey")
            else:  # held past the threshold before a poll noticed: a (short) hold all the same
                self.target.hold(binding.action, press.started_ms + self.tap_max_ms, "hotkey")
                self.target.release(binding.action, t_ms)

    def poll(self, bindings: Mapping[str, Binding], t_ms: int) -> None:
        """Start the holds that are due at ``t_ms``."""
        with self._lock:
            for combo, press in self._down.items():
                binding = bindings.get(combo)
                if binding is None or binding.action == PAUSE or press.held:
                    continue
                if t_ms - press.started_ms > self.tap_max_ms:
                    press.held = True
                    self.target.hold(binding.action, t_ms, "hotkey")

    @property
    def down(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._down)


def _finish_xorg_stop(listener) -> None:
    """Make pynput's X listener thread end now rather than at the next key event.

    pynput 1.8 sends its RECORD "disable" request on the very connection its thread is blocked
    reading, so the request waits there until another key event arrives (pynput pull request
    #583). Sending it again from a connection of our own ends the thread at once (the context
    is a server resource, so any client may name it); sharing the listener's connections
    across threads is what python-xlib cannot do safely. Only the X backend has a context.
    """
    context = getattr(listener, "_context", None)
    if context is None or not listener.is_alive():
        return
    import Xlib.display
    import Xlib.error

    try:
        display = Xlib.display.Display()
    except (Xlib.error.DisplayError, Xlib.error.ConnectionClosedError, OSError) as err:
        log.debug("hotkeys: cannot reach the X server to stop the listener (%s)", err)
        return
    try:
        display.record_disable_context(context)
        display.sync()
    except (Xlib.error.XError, Xlib.error.ConnectionClosedError) as err:  # it ended meanwhile
        log.debug("hotkeys: X listener already stopped (%s)", err)
    finally:
        display.close()


class HotkeyListener:
    """A global keyboard listener (pynput) feeding a :class:`TapHoldRecognizer`. A context manager.

    Build it with :meth:`start`; :meth:`close` stops it (idempotent).
    """

    def __init__(self, keyboard, bindings: list[Binding], recognizer: TapHoldRecognizer,
                 clock: Callable[[], int] = now_ms) -> None:
        self._keyboard = keyboard
        self.bindings = {b.combo: b for b in bindings}
        self.recognizer = recognizer
        self.clock = clock
        self._hotkeys = {b.combo: keyboard.HotKey(list(b.keys), self._activator(b)) for b in bindings}
        self._listener = None
        self._timers: list[threading.Timer] = []
        self._timer_lock = threading.Lock()
        self._closed = False
        #: Key presses heard so far, any key (to tell that the global hook is live).
        self.presses_heard = 0

    @classmethod
    def start(cls, options: HotkeyOptions, target: ExpressionTarget, *, on_pause: Callable[[], Any] | None = None,
              known_types: Collection[str] | None = None, clock: Callable[[], int] = now_ms) -> HotkeyListener:
        """Parse the bindings and start listening. Raises :class:`HotkeysUnavailableError` when
        there is no desktop session, :class:`~vcam_me.errors.ConfigError` for a bad binding."""
        keyboard = load_keyboard()
        bindings = parse_bindings(options, keyboard, known_types)
        recognizer = TapHoldRecognizer(target, options.tap_max_ms, on_pause=on_pause)
        self = cls(keyboard, bindings, recognizer, clock)
        listener = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        listener.start()
        listener.wait()
        self._listener = listener
        if getattr(listener, "IS_TRUSTED", True) is False:  # macOS: the user has not allowed it yet
            self.close()
            raise HotkeysUnavailableError("macOS does not let this app watch the keyboard yet: allow it in System "
                                          "Settings → Privacy & Security → Accessibility, then start again")
        log.info("hotkeys: %s", ", ".join(f"{b.combo} → {b.action}" for b in bindings))
        return self

    # -- listener thread -------------------------------------------------------------------
    def _activator(self, binding: Binding) -> Callable[[], None]:
        def activated() -> None:
            self.recognizer.activate(binding, self.clock())
            if binding.action != PAUSE:
                self._poll_after(self.recognizer.tap_max_ms + 1)

        return activated

    def _canonical(self, key):
        return self._listener.canonical(key) if self._listener is not None else key

    def _on_press(self, key, injected: bool = False) -> None:
        # A broad catch at the thread boundary: an exception here would stop pynput's listener
        # and with it every hotkey; one bad event is logged instead.
        try:
            self.presses_heard += 1
            canonical = self._canonical(key)
            for hotkey in self._hotkeys.values():
                hotkey.press(canonical)
        except Exception:
            log.exception("hotkeys: key press not handled")

    def _on_release(self, key, injected: bool = False) -> None:
        try:
            canonical = self._canonical(key)
            t = self.clock()
            for combo, hotkey in self._hotkeys.items():
                if canonical in self.bindings[combo].keys and combo in self.recognizer.down:
                    self.recognizer.deactivate(self.bindings[combo], t)
                hotkey.release(canonical)
        except Exception:
            log.exception("hotkeys: key release not handled")

    def _poll_after(self, delay_ms: int) -> None:
        def poll() -> None:
            try:
                self.recognizer.poll(self.bindings, self.clock())
            except Exception:  # a timer thread's boundary
                log.exception("hotkeys: hold not started")

        timer = threading.Timer(delay_ms / 1000.0, poll)
        timer.daemon = True
        with self._timer_lock:
            if self._closed:
                return
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        with self._timer_lock:
            if self._closed:
                return
            self._closed = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        if self._listener is not None:
            self._listener.stop()
            _finish_xorg_stop(self._listener)
            if self._listener.is_alive() and threading.current_thread() is not self._listener:
                self._listener.join(timeout=2.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
