"""Consent and disclosure: the visible "AI-generated avatar" label (the consent record and the
invisible watermark come later). Nothing here can be switched off by configuration."""

from vcam_me.consent.label import (
    BANNER_REPEAT_S,
    CORNER_TEXT,
    PRIMARY_TEXT,
    LabelSprites,
    LabelStamper,
    Sprite,
    apply_label,
    banner_text,
    format_consent_code,
    label_font_path,
    render_label_sprites,
    safe_column,
)

__all__ = [
    "BANNER_REPEAT_S",
    "CORNER_TEXT",
    "PRIMARY_TEXT",
    "LabelSprites",
    "LabelStamper",
    "Sprite",
    "apply_label",
    "banner_text",
    "format_consent_code",
    "label_font_path",
    "render_label_sprites",
    "safe_column",
]
