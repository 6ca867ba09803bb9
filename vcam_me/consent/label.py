"""The visible disclosure label (consent-watermark.md §7.1). It cannot be switched off.

Three elements, each pre-rendered once per output size as a premultiplied RGBA sprite and
alpha-blended per frame over its own small rectangle only:

* the **badge** (every frame): "AI-generated avatar" and, below it, "Consent ID XXXX-XXXX",
  white bold condensed sans-serif on a dark backing (``LabelOptions.backing_opacity``),
  bottom-centre (or top-centre) *inside the crop-safe central column*: the part of the frame
  that survives centre crops to 4:3, 1:1 and 9:16 portrait (x ∈ [437, 843] at 1280×720) and
  "fill" tiles up to 2:1 (which trim ≈ 5.6 % of the height at top and bottom). The primary
  text has a cap height of at least 5 % of the frame height (≥ 36 px at 720p, so ≥ 18 px
  after a downscale to 360p; for a portrait frame, 5 % of its width, the shorter side). At 5 % the words "AI-generated avatar" do not fit the 9:16
  column on one line, so they are wrapped ("AI-generated" / "avatar"); the Consent ID line
  is as large as the column allows (about 3 % of the height). Without a consent code the
  badge keeps its size and shows the primary text only, centred, so nothing moves when the
  code arrives;
* the **corner mark** (every frame): a small "AI" top-right, as the EU Code of Practice
  suggests; it may be cropped away, the badge remains;
* the **banner**: "This video is an AI-generated avatar of <name>, shown with their consent."
  in larger type next to the badge (inside the 1:1 centre column), for
  ``LabelOptions.banner_seconds`` at the first frame, after every
  :meth:`LabelStamper.restart_banner` (reconnect, face re-acquired) and every
  :data:`BANNER_REPEAT_S` seconds.

Text is drawn un-mirrored: the output reads correctly for the other side of the call (and in
recordings). Nothing here mirrors the image.

:func:`apply_label` is the pure function (image + sprites → labelled image); :class:`LabelStamper`
holds the sprites per output size and the banner timing, and stamps frames in place.
Cost at 1280×720 (``python tests/consent/bench_label.py``): ≈ 0.12 ms per frame for badge +
corner mark, ≈ 0.4 ms while the banner shows; the sprites take ≈ 0.14 s once per size.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from vcam_me.config import PROJECT_ROOT, LabelOptions
from vcam_me.types import RenderedFrame

log = logging.getLogger(__name__)

#: Primary wording of the badge (the capitalised "AI" leads, as the EU Code asks).
PRIMARY_TEXT = "AI-generated avatar"
#: The corner mark.
CORNER_TEXT = "AI"
#: Prefix of the badge's second line.
CONSENT_PREFIX = "Consent ID "
#: Minimum cap height of the primary text, as a fraction of the frame height.
MIN_CAP_FRACTION = 0.05
#: The banner comes back on its own after this many seconds.
BANNER_REPEAT_S = 600.0
#: Longest display name shown in the banner (longer ones are shortened with "…").
MAX_NAME_CHARS = 40

# Design margins (fractions of the frame height unless noted).
_CAP_TARGET = 0.052          # primary cap height aimed for (a little above the 5 % minimum)
_BANNER_CAP = 0.055          # banner cap height (shrinks to _CAP_TARGET if the text is long)
_SECONDARY_MIN_CAP = 0.028   # the Consent ID line never gets smaller than this
_FILL_TRIM = 0.0556          # a 2:1 "fill" tile trims this much at top and bottom
# Extra distance from the trimmed edge: none. The badge sits as low as every crop allows, over the
# chest as consent-watermark.md §7.1 puts it, because what lies just under the chin changes how a face
# tracker reads the whole face. On the sample avatar with its jaw drawn open, MediaPipe read jawOpen
# +0.29 under the badge as it was (1.5 % of the height higher, with looser leading), +0.41 under this
# one and +0.48 with no badge; lowered brows and a blink likewise (benchmarks/label_tracker.py).
_EDGE = 0.0
_COLUMN_INSET = 0.006        # inset from the crop-safe column's sides
_GAP = 0.02                  # between the badge and the banner
_FACE_BAND = (0.28, 0.75)    # landscape: rows (fraction of height) a wide banner keeps clear of
_WIDE_EDGE = 0.025           # landscape: side margin of the wide banner (fraction of width)
_WIDE_MIN_CAP = 0.045        # landscape: the wide banner may go this small to stay off the face
_BACKING_RGB = (18, 18, 20)  # the dark backing colour (its opacity comes from LabelOptions)
_TEXT_RGB = (255, 255, 255)

_FONT_FILE = PROJECT_ROOT / "assets" / "fonts" / "DejaVuSansCondensed-Bold.ttf"
# Crockford base32 (no I, L, O, U), in hyphen-separated groups.
_CODE_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]+(-[0-9A-HJKMNP-TV-Z]+)*$")


# --------------------------------------------------------------------------------------
# fonts
# --------------------------------------------------------------------------------------
def label_font_path() -> Path | None:
    """The bold sans-serif used for the label: the bundled DejaVu Sans Condensed Bold, else
    matplotlib's DejaVu Sans Bold, else ``None`` (Pillow's built-in scalable font)."""
    if _FONT_FILE.is_file():
        return _FONT_FILE
    spec = find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=64)
def _font(size_px: int):
    from PIL import ImageFont

    path = label_font_path()
    if path is not None:
        return ImageFont.truetype(str(path), size_px)
    return ImageFont.load_default(size=size_px)


def _cap_height(font) -> int:
    return -font.getbbox("H", anchor="ls")[1]


def _font_for_cap(cap_px: int):
    """The smallest font whose capital letters are at least ``cap_px`` tall."""
    ratio = _cap_height(_font(100)) / 100.0
    size = max(4, int(cap_px / ratio))
    while _cap_height(_font(size)) < cap_px:
        size += 1
    return _font(size)


# --------------------------------------------------------------------------------------
# text helpers
# --------------------------------------------------------------------------------------
def format_consent_code(code: str) -> str:
    """The displayed form of a consent code: upper case, grouped ``XXXX-XXXX``.

    Accepts the 8-character Crockford base32 short form with or without the hyphen (spaces
    ignored; other lengths of 4–16 symbols in hyphenated groups pass unchanged). Raises
    ``ValueError`` for anything else, so free text can never pose as a code.
    """
    text = "".join(str(code).split()).upper()
    if len(text) == 8 and "-" not in text:
        text = f"{text[:4]}-{text[4:]}"
    if not 4 <= len(text.replace("-", "")) <= 16 or not _CODE_RE.match(text):
        raise ValueError(f"consent code {code!r}: expected Crockford base32 like 7KQ4-M2XD")
    return text


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    text = "".join(ch for ch in str(name) if unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split())
    if not text:
        return None
    if len(text) > MAX_NAME_CHARS:
        text = text[: MAX_NAME_CHARS - 1].rstrip() + "…"
    return text


def banner_text(display_name: str | None = None) -> str:
    """The wording of the start banner."""
    name = _clean_name(display_name)
    who = name if name else "a real person"
    return f"This video is an AI-generated avatar of {who}, shown with their consent."


def _wrap(font, text: str, max_width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= max_width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


# --------------------------------------------------------------------------------------
# sprites
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sprite:
    """A pre-rendered RGBA overlay placed at ``(x, y)``.

    ``rgb`` / ``alpha`` are the straight colour and coverage (``uint8``), for inspection;
    the blend uses the premultiplied 8.8 fixed-point forms made from them once.
    """

    x: int
    y: int
    rgb: np.ndarray
    alpha: np.ndarray
    premul: np.ndarray  # (h, w, 3) uint8: colour × alpha (premultiplied, rounded)
    inv: np.ndarray     # (h, w, 3) uint8: (1 − alpha) × 255, rounded

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` in frame pixels."""
        return self.x, self.y, int(self.alpha.shape[1]), int(self.alpha.shape[0])

    @classmethod
    def from_coverage(cls, x: int, y: int, text: np.ndarray, backing: np.ndarray, opacity: float) -> "Sprite":
        """White ``text`` coverage over a dark ``backing`` coverage (both float in [0, 1])."""
        t = text[..., None]
        b = backing[..., None] * opacity
        alpha = t + b * (1.0 - t)
        premul = t * np.asarray(_TEXT_RGB, np.float32) + b * (1.0 - t) * np.asarray(_BACKING_RGB, np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            rgb = np.where(alpha > 0, premul / np.maximum(alpha, 1e-6), 0.0)
        inv = np.clip(np.rint((1.0 - alpha) * 255.0), 0, 255).astype(np.uint8)
        return cls(
            x=int(x), y=int(y),
            rgb=np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
            alpha=np.clip(np.rint(alpha[..., 0] * 255.0), 0, 255).astype(np.uint8),
            premul=np.clip(np.rint(premul), 0, 255).astype(np.uint8),
            inv=np.ascontiguousarray(np.repeat(inv, 3, axis=2)),
        )

    def blend_into(self, image: np.ndarray, scratch: np.ndarray | None = None) -> None:
        """``image[rect] = image[rect] × (1 − α) + colour × α``, in place.

        Two saturating uint8 OpenCV passes over the rectangle only (≈ 0.1 ms for the 720p
        badge); within 1 of the exact blend, and exact where α is 0 or 1.
        """
        import cv2

        h, w = self.alpha.shape
        roi = image[self.y:self.y + h, self.x:self.x + w]
        if scratch is None or scratch.shape != roi.shape:
            scratch = np.empty(roi.shape, np.uint8)
        cv2.multiply(roi, self.inv, dst=scratch, scale=1.0 / 255.0)
        if roi.strides[1:] == (3, 1):
            cv2.add(scratch, self.premul, dst=roi)
        else:  # a pixel layout OpenCV cannot write through (e.g. a column-strided view)
            np.copyto(roi, cv2.add(scratch, self.premul))


@dataclass(frozen=True)
class LabelSprites:
    """Everything :func:`apply_label` needs for one output size."""

    size: tuple[int, int]
    badge: Sprite
    corner: Sprite
    banner: Sprite
    #: ``(x0, x1)``: the crop-safe central column the badge stays inside.
    safe_column: tuple[int, int]
    primary_cap_px: int
    secondary_cap_px: int
    banner_cap_px: int
    badge_lines: tuple[str, ...]
    banner_lines: tuple[str, ...]
    consent_code: str | None


def safe_column(size: tuple[int, int]) -> tuple[int, int]:
    """``(x0, x1)`` of the central column kept by a 9:16 portrait centre crop of the frame."""
    width, height = size
    col = min(width, int(height * 9 // 16))
    x0 = (width - col + 1) // 2
    return x0, x0 + col


@dataclass
class _Line:
    mask: np.ndarray | None  # float coverage, or None for reserved (empty) room
    baseline: int            # row of the baseline inside mask
    cap: int
    descent: int


def _render_line(font, text: str, max_width: int, cap: int) -> _Line:
    import cv2
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text, anchor="ls")
    pad = 2
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=255, anchor="ls")
    mask = np.asarray(img, np.float32) / 255.0
    if mask.shape[1] > max_width:  # last resort: condense horizontally, keeping the height
        mask = cv2.resize(mask, (max_width, mask.shape[0]), interpolation=cv2.INTER_AREA)
    descent = max(font.getbbox("gjpqy", anchor="ls")[3], 1)
    return _Line(mask, pad - top, cap, descent)


def _reserved_line(font, cap: int) -> _Line:
    return _Line(None, 0, cap, max(font.getbbox("gjpqy", anchor="ls")[3], 1))


def _block(lines: list[_Line], width: int | None, pad_x: int, pad_top: int, pad_bottom: int,
           radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Text coverage and rounded-backing coverage of a block of centred lines."""
    import cv2

    baselines = []
    y = pad_top
    for i, line in enumerate(lines):
        if i == 0:
            y += line.cap
        else:
            prev = lines[i - 1]
            # tight leading (12 % of the cap) keeps the three-line badge short, so its top stays off the chin
            y += prev.descent + max(2, round(0.12 * line.cap)) + line.cap
        baselines.append(y)
    height = baselines[-1] + lines[-1].descent + pad_bottom
    # Reserved (empty) trailing room: centre the real lines in the full height.
    real = [i for i, line in enumerate(lines) if line.mask is not None]
    shift = 0
    if real and real[-1] != len(lines) - 1:
        used = baselines[real[-1]] + lines[real[-1]].descent + pad_bottom
        shift = (height - used) // 2
    content_w = max(line.mask.shape[1] for line in lines if line.mask is not None)
    width = width if width is not None else content_w + 2 * pad_x
    text = np.zeros((height, width), np.float32)
    for line, base in zip(lines, baselines):
        if line.mask is None:
            continue
        h, w = line.mask.shape
        top = base + shift - line.baseline
        left = (width - w) // 2
        y0, y1 = max(top, 0), min(top + h, height)
        x0, x1 = max(left, 0), min(left + w, width)
        np.maximum(text[y0:y1, x0:x1], line.mask[y0 - top:y1 - top, x0 - left:x1 - left], out=text[y0:y1, x0:x1])
    # Anti-aliased rounded rectangle: draw 4× larger, then area-downsample.
    k = 4
    big = np.zeros((height * k, width * k), np.uint8)
    r = max(0, min(radius, height // 2, width // 2)) * k
    cv2.rectangle(big, (r, 0), (width * k - 1 - r, height * k - 1), 255, -1)
    cv2.rectangle(big, (0, r), (width * k - 1, height * k - 1 - r), 255, -1)
    if r > 0:
        for cx, cy in ((r, r), (width * k - 1 - r, r), (r, height * k - 1 - r), (width * k - 1 - r, height * k - 1 - r)):
            cv2.circle(big, (cx, cy), r, 255, -1)
    backing = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return text, backing


def render_label_sprites(
    size: tuple[int, int],
    options: LabelOptions | None = None,
    *,
    consent_code: str | None = None,
    display_name: str | None = None,
) -> LabelSprites:
    """Pre-render the badge, corner mark and banner for frames of ``size`` = (width, height).

    ``consent_code`` is shown as "Consent ID XXXX-XXXX" (see :func:`format_consent_code`);
    ``None`` shows the primary text alone in a badge of the same size. ``display_name``
    (optional) is named in the banner.
    """
    options = options or LabelOptions()
    width, height = int(size[0]), int(size[1])
    if width < 16 or height < 16:
        raise ValueError(f"frame size too small for a legible label: {width}x{height}")
    code = format_consent_code(consent_code) if consent_code is not None else None
    opacity = float(options.backing_opacity)

    x0, x1 = safe_column((width, height))
    # Sizes scale with the frame height (the shorter side of a landscape frame; for a
    # portrait frame the width, as GB 45438 measures labels on the shortest side).
    ref = min(width, height)
    inset = max(1, round(_COLUMN_INSET * ref))
    badge_w = (x1 - x0) - 2 * inset
    # "Fill" tiles up to 2:1 keep the central W/2 rows: stay clear of what they trim
    # (40 px at 1280×720), and never closer to the edge than a 16:9 frame would be.
    fill_trim = (height - width / 2) / 2 if width >= height else 0.0
    margin_y = max(math.ceil(_FILL_TRIM * ref), math.ceil(fill_trim)) + round(_EDGE * ref)

    # -- badge -----------------------------------------------------------------------------
    cap = max(math.ceil(_CAP_TARGET * ref), math.ceil(MIN_CAP_FRACTION * ref))
    font = _font_for_cap(cap)
    pad_x = max(2, round(0.3 * cap))
    avail = badge_w - 2 * pad_x
    primary = _wrap(font, PRIMARY_TEXT, avail)
    lines = [_render_line(font, text, avail, cap) for text in primary]
    # Consent line: as large as fits (measured on a typical code so the layout never moves).
    sample = CONSENT_PREFIX + "7KQ4-M2XD"
    cap2 = cap
    font2 = font
    while cap2 > max(4, math.ceil(_SECONDARY_MIN_CAP * ref)) and font2.getlength(sample) > avail:
        cap2 -= 1
        font2 = _font_for_cap(cap2)
    if code is not None:
        lines.append(_render_line(font2, CONSENT_PREFIX + code, avail, cap2))
    else:
        lines.append(_reserved_line(font2, cap2))
    pad_top = max(2, round(0.22 * cap))
    text, backing = _block(lines, badge_w, pad_x, pad_top, max(2, round(0.15 * cap)), radius=round(0.3 * cap))
    bh = text.shape[0]
    bx = x0 + inset
    by = margin_y if options.position == "top-centre" else height - margin_y - bh
    by = max(0, min(by, height - bh))
    badge = Sprite.from_coverage(bx, by, text, backing, opacity)

    # -- corner mark ----------------------------------------------------------------------
    corner_line = _render_line(font, CORNER_TEXT, width, cap)
    ct, cb = _block([corner_line], None, max(2, round(0.35 * cap)), pad_top, pad_top, radius=round(0.3 * cap))
    cx = width - round(0.025 * width) - ct.shape[1]
    cy = margin_y
    if options.position == "top-centre" and cx < bx + badge_w:  # narrow frame: keep clear of badge and banner
        cy = height - margin_y - ct.shape[0]
    corner = Sprite.from_coverage(max(0, cx), min(cy, height - ct.shape[0]), ct, cb, opacity)

    # -- banner ---------------------------------------------------------------------------
    col = min(width, height) - 2 * inset
    name = _clean_name(display_name)
    gap = round(_GAP * ref)
    room = (by - gap - margin_y) if options.position != "top-centre" else (height - margin_y - (by + bh + gap))
    # Wide frames (16:10 and wider): the avatar's face fills the middle band (the renderer puts the eyes at
    # ~43 % of the height), so a banner stacked on the badge in the narrow centre column would
    # cover the face for its whole showing. Instead it runs wide across the band above the head
    # (or below the chin when the badge is on top), where it covers hair and shoulders.
    wide = width >= 1.6 * height
    edge_x = round(_WIDE_EDGE * width)
    if wide:
        if options.position != "top-centre":
            col = corner.x - gap - edge_x
            room = round(_FACE_BAND[0] * height) - margin_y
        else:
            col = width - 2 * edge_x
            room = height - margin_y - round(_FACE_BAND[1] * height)
    banner_cap = max(math.ceil(_BANNER_CAP * ref), cap)
    while True:  # largest type that fits the room; then a shorter name; else accept
        bfont = _font_for_cap(banner_cap)
        bpad = max(2, round(0.4 * banner_cap))
        btext_lines = _wrap(bfont, banner_text(name), col - 2 * bpad)
        blines = [_render_line(bfont, t, col - 2 * bpad, banner_cap) for t in btext_lines]
        bt, bb = _block(blines, None, bpad, bpad, bpad, radius=round(0.3 * banner_cap))
        if bt.shape[0] <= room:
            break
        if banner_cap > (math.ceil(_WIDE_MIN_CAP * ref) if wide else cap):
            banner_cap -= 1
        elif name and len(name) > 13:
            name = name[: max(12, len(name) // 2)].rstrip() + "…"
        else:
            break  # cannot fit (a very small or portrait frame): it overlaps the picture above
    if wide and options.position != "top-centre":
        bnx, bny = edge_x + (col - bt.shape[1]) // 2, margin_y
    elif wide:
        bnx, bny = (width - bt.shape[1]) // 2, height - margin_y - bt.shape[0]
    else:
        bnx = (width - bt.shape[1]) // 2
        bny = by - gap - bt.shape[0] if options.position != "top-centre" else by + bh + gap
    bny = max(0, min(bny, height - bt.shape[0]))
    banner = Sprite.from_coverage(bnx, bny, bt, bb, max(opacity, 0.75))

    return LabelSprites(
        size=(width, height), badge=badge, corner=corner, banner=banner, safe_column=(x0, x1),
        primary_cap_px=_cap_height(font), secondary_cap_px=_cap_height(font2), banner_cap_px=_cap_height(bfont),
        badge_lines=tuple(primary) + ((CONSENT_PREFIX + code,) if code else ()),
        banner_lines=tuple(btext_lines), consent_code=code,
    )


# --------------------------------------------------------------------------------------
# the pure function
# --------------------------------------------------------------------------------------
def apply_label(image: np.ndarray, sprites: LabelSprites, *, banner: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
    """Blend the label onto an ``(H, W, 3) uint8 RGB`` image and return the result.

    ``out=None`` leaves ``image`` untouched and returns a labelled copy; ``out=image`` labels
    it in place (the fast path). ``banner`` adds the banner. Only the sprites' rectangles are
    touched.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image shape: {image.shape} != (H, W, 3)")
    if (image.shape[1], image.shape[0]) != sprites.size:
        raise ValueError(f"image size {image.shape[1]}x{image.shape[0]} != sprite size {sprites.size[0]}x{sprites.size[1]}")
    if out is None:
        out = image.copy()
    elif out is not image:
        np.copyto(out, image)
    sprites.badge.blend_into(out)
    sprites.corner.blend_into(out)
    if banner:
        sprites.banner.blend_into(out)
    return out


# --------------------------------------------------------------------------------------
# the stateful stamper
# --------------------------------------------------------------------------------------
class LabelStamper:
    """Holds the label sprites (per output size) and the banner timing; stamps frames.

    :meth:`stamp` labels ``frame.image`` **in place** when the array is writeable and
    returns the same frame: the renderer hands over a fresh buffer per frame, so this saves a
    720p copy. A read-only image is copied first. There is deliberately no way to turn the
    label off; :class:`~vcam_me.config.LabelOptions` only moves and restyles it.
    """

    def __init__(self, options: LabelOptions | None = None, *, consent_code: str | None = None,
                 display_name: str | None = None, banner_repeat_s: float = BANNER_REPEAT_S) -> None:
        self.options = options or LabelOptions()
        if banner_repeat_s <= self.options.banner_seconds:
            raise ValueError(f"banner_repeat_s ({banner_repeat_s}) must exceed banner_seconds ({self.options.banner_seconds})")
        self._code = format_consent_code(consent_code) if consent_code is not None else None
        self._name = _clean_name(display_name)
        self._banner_ms = int(round(self.options.banner_seconds * 1000))
        self._repeat_ms = int(round(banner_repeat_s * 1000))
        self._banner_start_ms: int | None = None
        self._sprites: dict[tuple[int, int], LabelSprites] = {}
        self._scratch: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, size: tuple[int, int], options: LabelOptions | None = None, *, consent_code: str | None = None,
               display_name: str | None = None, banner_repeat_s: float = BANNER_REPEAT_S) -> "LabelStamper":
        """A stamper with its sprites for ``size`` = (width, height) already rendered."""
        stamper = cls(options, consent_code=consent_code, display_name=display_name, banner_repeat_s=banner_repeat_s)
        stamper.sprites_for(size)
        return stamper

    @property
    def consent_code(self) -> str | None:
        return self._code

    def sprites_for(self, size: tuple[int, int]) -> LabelSprites:
        """The sprites for frames of ``size`` (rendered on first use, then cached)."""
        key = (int(size[0]), int(size[1]))
        sprites = self._sprites.get(key)
        if sprites is None:
            sprites = render_label_sprites(key, self.options, consent_code=self._code, display_name=self._name)
            with self._lock:
                self._sprites = {**self._sprites, key: sprites}
        return sprites

    def set_consent(self, consent_code: str | None, display_name: str | None = None) -> None:
        """Show another consent code (and banner name); re-renders the sprites of every size in use."""
        code = format_consent_code(consent_code) if consent_code is not None else None
        name = _clean_name(display_name)
        fresh = {k: render_label_sprites(k, self.options, consent_code=code, display_name=name) for k in list(self._sprites)}
        with self._lock:
            self._code, self._name, self._sprites = code, name, fresh

    def restart_banner(self, now_ms: int) -> None:
        """Show the banner again from ``now_ms`` (after a reconnect or re-acquisition)."""
        self._banner_start_ms = int(now_ms)

    def banner_visible(self, now_ms: int) -> bool:
        """Whether a frame at ``now_ms`` gets the banner (without advancing the schedule)."""
        start = self._banner_start_ms
        if start is None or now_ms - start >= self._repeat_ms:
            return True
        return start <= now_ms < start + self._banner_ms

    def _banner_due(self, now_ms: int) -> bool:
        start = self._banner_start_ms
        if start is None or now_ms - start >= self._repeat_ms:
            self._banner_start_ms = start = int(now_ms)
        return start <= now_ms < start + self._banner_ms

    def stamp(self, frame: RenderedFrame) -> RenderedFrame:
        """Label one frame (in place when possible; see the class docstring)."""
        image = frame.image
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError(f"frame image must be (H, W, 3) uint8, got {getattr(image, 'dtype', None)} {getattr(image, 'shape', None)}")
        sprites = self.sprites_for((image.shape[1], image.shape[0]))
        if not image.flags.writeable:
            image = image.copy()
            frame = RenderedFrame(image, frame.timestamp_ms, frame.source_timestamp_ms)
        parts = [sprites.badge, sprites.corner]
        if self._banner_due(frame.timestamp_ms):
            parts.append(sprites.banner)
        for sprite in parts:
            h, w = sprite.alpha.shape
            key = (h, w)
            scratch = self._scratch.get(key)
            if scratch is None:
                if len(self._scratch) > 16:
                    self._scratch.clear()
                scratch = self._scratch[key] = np.empty((h, w, 3), np.uint8)
            sprite.blend_into(image, scratch)
        return frame
