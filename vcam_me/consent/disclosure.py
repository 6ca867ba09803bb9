"""What every output frame carries: the visible label, then the invisible consent mark.

One object, so that nothing can hand a frame to a sink with one and not the other. Neither
part has an off switch: :class:`~vcam_me.config.LabelOptions` only moves and restyles the
label, and the mark is always embedded with the record's consent ID.
"""

from __future__ import annotations

from vcam_me.consent.label import LabelStamper
from vcam_me.consent.watermark import WatermarkEmbedder
from vcam_me.types import RenderedFrame

#: The spreading key of the public vcam_me mark. It is public on purpose: anyone may read the
#: consent ID out of a recording with ``vcam-me verify``. It gives no security (anyone can
#: also stamp an ID); trust comes from the signed record the ID names (consent-watermark.md §6).
PUBLIC_MARK_KEY = b"vcam_me consent mark v1"


class Disclosure:
    """Label then mark, in place, on each frame. Build with :meth:`create`."""

    def __init__(self, label: LabelStamper, mark: WatermarkEmbedder) -> None:
        self.label = label
        self.mark = mark

    @classmethod
    def create(cls, label: LabelStamper, consent_id: int, size: tuple[int, int], key: bytes = PUBLIC_MARK_KEY) -> "Disclosure":
        return cls(label, WatermarkEmbedder.create(consent_id, key, size))

    @property
    def consent_id(self) -> int:
        return self.mark.consent_id

    def stamp(self, frame: RenderedFrame) -> RenderedFrame:
        # The mark goes last so that it covers every pixel, the label's included.
        return self.mark.embed_frame(self.label.stamp(frame))

    def restart_banner(self, now_ms: int) -> None:
        self.label.restart_banner(now_ms)
