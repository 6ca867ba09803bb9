"""The one exception hierarchy of vcam_me.

Everything the user can cause (bad file, missing camera, wrong model hash, invalid
configuration) raises a subclass of :class:`VcamError` with a one-line message that says
what was wrong and, where it helps, what to do. The command line prints that line and exits
non-zero; it never shows a traceback for these.

::

    VcamError
    ├── ConfigError       invalid configuration value (names the key and allowed values)
    ├── ModelError        model file missing, unreadable or with the wrong sha256
    ├── CaptureError      camera or video cannot be opened or read
    ├── TrackingError     the face tracker failed (not "no face": that is an empty result)
    ├── AvatarError       avatar cannot be created or loaded (no face, several faces, ...)
    ├── ConsentError      consent record missing, invalid, expired or revoked
    ├── MicroExpressionError  micro-expression library or script malformed (names file and line)
    └── OutputError       a sink cannot be opened or written (virtual camera, file, ...)
"""

from __future__ import annotations


class VcamError(Exception):
    """Base class: a problem the user can act on. ``str(err)`` is one line."""

    exit_code = 2


class ConfigError(VcamError):
    pass


class ModelError(VcamError):
    pass


class CaptureError(VcamError):
    pass


class TrackingError(VcamError):
    pass


class AvatarError(VcamError):
    pass


class ConsentError(VcamError):
    pass


class OutputError(VcamError):
    pass


class MicroExpressionError(VcamError):
    pass


class SetupError(VcamError):
    """A personalisation capture that cannot be used (no face, too short, too little expression, too dark…)."""


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting a user's value in an error
    message: a 20 000-character string in a file must not make a 20 000-character line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 12]}… ({len(text)} chars)"
