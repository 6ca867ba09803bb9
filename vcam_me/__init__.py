"""vcam_me: a consenting person's avatar instead of the raw webcam, in any video call."""

__version__ = "0.1.0"
