"""Micro-expressions: a library of types (data), envelopes, the engine that injects them, and
the triggers that start them (automatic mode, scripts; hotkeys live in ``ui/``)."""

from vcam_me.expression.micro.auto import AutoTrigger
from vcam_me.expression.micro.engine import MicroEngine
from vcam_me.expression.micro.envelope import (
    held_envelope,
    micro_envelope,
    raised_cosine_rise,
)
from vcam_me.expression.micro.events import MicroEvent, events_from_json, events_to_json
from vcam_me.expression.micro.library import (
    DEFAULT_LIBRARY_PATH,
    MicroLibrary,
    MicroType,
    expand_aus,
)
from vcam_me.expression.micro.script import (
    ScriptedTrigger,
    ScriptEntry,
    load_script,
    parse_script,
)

__all__ = [
    "DEFAULT_LIBRARY_PATH", "AutoTrigger", "MicroEngine", "MicroEvent", "MicroLibrary", "MicroType", "ScriptEntry",
    "ScriptedTrigger", "events_from_json", "events_to_json", "expand_aus", "held_envelope", "load_script",
    "micro_envelope", "parse_script", "raised_cosine_rise",
]
