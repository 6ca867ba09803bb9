"""Saving the settings dialog's choices into the user's ``config.toml`` (no Qt here).

There is one configuration system (:mod:`vcam_me.config`): defaults in
``config/default.toml``, the user's overrides in ``config.toml`` in the platform's config
folder. The dialog only writes overrides into that file, after :func:`config_from_dict` has
validated the result, so what it saves loads exactly like a hand-written file. The write is
atomic (:mod:`vcam_me.storage`: a temporary file, fsync, then a rename), and a file the user wrote by hand is first kept
beside it (``config.toml.bak``, or the next free name), because comments do not survive.

Key combinations: Qt records them as "Ctrl+Alt+1"; the hotkeys use pynput's syntax,
"<ctrl>+<alt>+1". :func:`qt_to_pynput` and :func:`pynput_to_qt` convert between the two.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from vcam_me.config import AppConfig, config_from_dict, load_config, user_config_path
from vcam_me.errors import ConfigError
from vcam_me.storage import atomic_write_text, remove_stale_temporaries

#: First line of a file this module wrote; a file without it is the user's own, kept on save.
HEADER = "# vcam-me settings: written by the settings dialog (edit freely; the dialog keeps your values)"

_QT_TO_PYNPUT = {
    "ctrl": "<ctrl>", "alt": "<alt>", "shift": "<shift>", "meta": "<cmd>", "space": "<space>", "esc": "<esc>",
    "tab": "<tab>", "return": "<enter>", "enter": "<enter>", "backspace": "<backspace>", "del": "<delete>",
    "delete": "<delete>", "ins": "<insert>", "insert": "<insert>", "home": "<home>", "end": "<end>",
    "pgup": "<page_up>", "pgdown": "<page_down>", "up": "<up>", "down": "<down>", "left": "<left>",
    "right": "<right>", "pause": "<pause>", "print": "<print_screen>",
}
_PYNPUT_TO_QT = {v: k.capitalize() for k, v in _QT_TO_PYNPUT.items()} | {
    "<ctrl>": "Ctrl", "<cmd>": "Meta", "<enter>": "Return", "<delete>": "Del", "<insert>": "Ins",
    "<page_up>": "PgUp", "<page_down>": "PgDown", "<print_screen>": "Print", "<esc>": "Esc",
}


def qt_to_pynput(text: str) -> str:
    """"Ctrl+Alt+1" (a QKeySequence in portable text) → "<ctrl>+<alt>+1"; "" stays "".

    Raises ValueError for a sequence of several chords ("Ctrl+K, Ctrl+C"): a hotkey is one
    combination pressed at once."""
    text = text.strip()
    if not text:
        return ""
    if "," in text.replace("+,", ""):
        raise ValueError(f"{text!r}: press one combination (keys held together), not a sequence")
    parts = text.split("+")
    if "" in parts:  # the "+" key itself ("Ctrl++"): pynput's syntax cannot name it
        raise ValueError(f"{text!r}: the + key cannot be part of a hotkey; choose another key")
    keys = []
    for part in parts:
        low = part.lower()
        if low in _QT_TO_PYNPUT:
            keys.append(_QT_TO_PYNPUT[low])
        elif len(low) > 1 and low[0] == "f" and low[1:].isdigit():
            keys.append(f"<{low}>")
        elif len(part) == 1:
            keys.append(low)
        else:
            raise ValueError(f"{text!r}: the key {part!r} cannot be a global hotkey")
    if all(k in ("<ctrl>", "<alt>", "<shift>", "<cmd>") for k in keys):
        raise ValueError(f"{text!r}: add a key to the modifiers")
    return "+".join(keys)


def pynput_to_qt(combo: str) -> str:
    """"<ctrl>+<alt>+1" → "Ctrl+Alt+1" (for showing a configured combo in the dialog)."""
    out = []
    for key in (k for k in combo.split("+") if k):
        if key in _PYNPUT_TO_QT:
            out.append(_PYNPUT_TO_QT[key])
        elif key.startswith("<f") and key[2:-1].isdigit():
            out.append(key[1:-1].upper())
        else:
            out.append(key.strip("<>").upper() if len(key.strip("<>")) == 1 else key.strip("<>").capitalize())
    return "+".join(out)


def read_user_settings(path: Path | None = None) -> dict[str, Any]:
    """The user's ``config.toml`` as parsed TOML ({} when there is none). A file that is not
    valid TOML is an error: the dialog must not replace what it cannot read."""
    path = Path(path or user_config_path())
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML ({err}); fix or move it before saving settings") from None


def merge(existing: dict[str, Any], changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``changes`` (section → key → value) over ``existing``; a table value (such as
    ``hotkeys.bindings``) replaces the old table whole, as in the config files."""
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in existing.items()}
    for section, values in changes.items():
        target = out.setdefault(section, {})
        for key, value in values.items():
            target[key] = value
    return out


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def to_toml(data: dict[str, Any]) -> str:
    """Sections of scalars, lists and one level of sub-tables, as TOML."""
    lines = [HEADER]
    for section, values in data.items():
        if not isinstance(values, dict):
            raise TypeError(f"[{section}] must be a table")
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines += ["", f"[{section}]"]
        lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in values.items() if k not in tables]
        for name, table in tables.items():
            lines += ["", f"[{section}.{json.dumps(name)}]"]
            lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _backup_name(path: Path) -> Path:
    candidate = path.with_name(path.name + ".bak")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{n}")
        n += 1
    return candidate


def save_settings(changes: dict[str, dict[str, Any]], path: Path | None = None) -> tuple[AppConfig, Path | None]:
    """Validate ``changes`` on top of the user's file and the defaults, then write the file.

    Returns the configuration as it now loads (defaults + the user's file) and where a
    hand-written file was kept (``None`` if there was none to keep). Raises ConfigError
    (one line naming the key) when a value is not allowed; nothing is written then.
    """
    path = Path(path or user_config_path())
    existing = read_user_settings(path)
    data = merge(existing, changes)
    cfg = config_from_dict(data, load_config(use_user_config=False))  # raises before any write
    text = to_toml(data)
    if tomllib.loads(text) != {s: dict(v) for s, v in data.items()}:  # what we write reads back the same
        raise ConfigError("settings could not be written faithfully as TOML")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)  # left by a save that crashed
    kept = None
    if path.is_file():
        old = path.read_text(encoding="utf-8")
        if not old.startswith(HEADER):
            kept = _backup_name(path)
            atomic_write_text(kept, old, exclusive=True)
    atomic_write_text(path, text)
    return cfg, kept
