"""The visible label: content, crop-safe placement, size, legibility at 360p, banner timing.

Per-frame cost is measured outside the unit tests: ``python tests/consent/bench_label.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import cv2
import numpy as np
import pytest

import vcam_me.consent as consent
from vcam_me.config import LabelOptions, config_from_dict
from vcam_me.consent import (
    LabelStamper,
    apply_label,
    banner_text,
    format_consent_code,
    label_font_path,
    render_label_sprites,
    safe_column,
)
from vcam_me.errors import ConfigError
from vcam_me.types import RenderedFrame

CODE = "7KQ4M2XD"
SIZES = [(1280, 720), (640, 360), (1920, 1080), (854, 480), (640, 480)]


def _scene(size, seed=0):
    """A busy mid-grey test picture (gradient + noise), like skin and clothes behind the label."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 90 + 80 * (xx / w) + 40 * (yy / h)
    image = base[..., None] + rng.normal(0, 18, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _glyph_boxes(region: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of the bright glyphs in a label region, threshold halfway between
    the backing and white."""
    luma = region.astype(np.float32).mean(axis=2)
    backing = float(np.median(luma))
    mask = (luma > backing + 0.5 * (255 - backing)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    rh, rw = mask.shape
    boxes = [tuple(int(v) for v in stats[i, :4]) for i in range(1, n) if stats[i, 4] >= 3]
    # drop what touches the border: picture showing through the backing's rounded corners
    return [b for b in boxes if b[0] > 0 and b[1] > 0 and b[0] + b[2] < rw and b[1] + b[3] < rh]


def _first_line_boxes(region):
    boxes = _glyph_boxes(region)
    top = min(b[1] for b in boxes)
    cap = max(b[3] for b in boxes if b[1] <= top + 2)
    return sorted((b for b in boxes if b[1] < top + cap // 2), key=lambda b: b[0])


def _crop(image, rect, scale=1.0):
    x, y, w, h = rect
    x0, y0 = int(math.floor(x * scale)), int(math.floor(y * scale))
    x1, y1 = int(math.ceil((x + w) * scale)), int(math.ceil((y + h) * scale))
    return image[y0:y1, x0:x1]


# -- content -----------------------------------------------------------------------------
def test_public_surface():
    assert {"LabelStamper", "apply_label", "render_label_sprites", "format_consent_code"} <= set(consent.__all__)


def test_uses_a_bundled_or_packaged_font_not_a_system_one():
    path = label_font_path()
    assert path is not None and path.is_file()
    assert "/usr/share/fonts" not in str(path)


def test_badge_wording():
    sprites = render_label_sprites((1280, 720), consent_code=CODE)
    assert " ".join(sprites.badge_lines[:-1]) == "AI-generated avatar"
    assert sprites.badge_lines[-1] == "Consent ID 7KQ4-M2XD"
    assert sprites.consent_code == "7KQ4-M2XD"


def test_without_consent_code_badge_keeps_its_place_and_size():
    with_code = render_label_sprites((1280, 720), consent_code=CODE)
    without = render_label_sprites((1280, 720))
    assert " ".join(without.badge_lines) == "AI-generated avatar"
    assert without.badge.rect == with_code.badge.rect
    assert not np.array_equal(without.badge.alpha, with_code.badge.alpha)


@pytest.mark.parametrize("raw, shown", [("7kq4m2xd", "7KQ4-M2XD"), ("7KQ4-M2XD", "7KQ4-M2XD"), (" 7KQ4 M2XD ", "7KQ4-M2XD")])
def test_consent_code_format(raw, shown):
    assert format_consent_code(raw) == shown


@pytest.mark.parametrize("raw", ["", "7KQ4_M2XD", "no consent record", "-", "X" * 20])
def test_consent_code_rejects_non_codes(raw):
    with pytest.raises(ValueError):
        format_consent_code(raw)


def test_banner_wording():
    assert banner_text("Jane Doe") == "This video is an AI-generated avatar of Jane Doe, shown with their consent."
    assert "AI-generated avatar" in banner_text(None) and "consent" in banner_text(None)
    sprites = render_label_sprites((1280, 720), display_name="Jane Doe")
    assert " ".join(sprites.banner_lines) == banner_text("Jane Doe")


@pytest.mark.parametrize("size", [(160, 120), (720, 1280), (200, 600), (3840, 2160)])
def test_odd_sizes_render_without_overlap(size):
    for position in ("bottom-centre", "top-centre"):
        sprites = render_label_sprites(size, LabelOptions(position=position), consent_code=CODE,
                                       display_name="Bartholomew Maximilian Ferdinand")
        rects = [sprites.badge.rect, sprites.corner.rect, sprites.banner.rect]
        for i, (x, y, w, h) in enumerate(rects):
            assert 0 <= x and x + w <= size[0] and 0 <= y and y + h <= size[1]
            for ox, oy, ow, oh in rects[i + 1:]:
                assert x + w <= ox or ox + ow <= x or y + h <= oy or oy + oh <= y
        assert sprites.primary_cap_px >= math.ceil(0.05 * min(size))


def test_long_name_is_shortened_and_banner_stays_in_frame():
    sprites = render_label_sprites((1280, 720), display_name="Maximilian " * 12 + "\x07")
    x, y, w, h = sprites.banner.rect
    assert y >= 0 and y + h <= sprites.badge.y
    assert "…" in " ".join(sprites.banner_lines)


# -- placement and size ------------------------------------------------------------------------
def test_safe_column_at_720p():
    x0, x1 = safe_column((1280, 720))
    assert 437 <= x0 and x1 <= 843 and x1 - x0 >= 400


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("position", ["bottom-centre", "top-centre"])
def test_badge_inside_crop_safe_region(size, position):
    w, h = size
    sprites = render_label_sprites(size, LabelOptions(position=position), consent_code=CODE)
    x, y, bw, bh = sprites.badge.rect
    # 9:16 portrait centre crop keeps x in [W/2 - 9H/32, W/2 + 9H/32]
    half = min(w, h * 9 / 16) / 2
    assert x >= w / 2 - half and x + bw <= w / 2 + half
    if size == (1280, 720):
        assert x >= 437 and x + bw <= 843
    # 2:1 "fill" tiles trim (H - W/2)/2 rows at top and bottom (40 px at 720p)
    trim = max(0.0, (h - w / 2) / 2) if w / h < 2 else 0
    trim = max(trim, 0.0556 * h)
    assert y >= trim and y + bh <= h - trim
    if position == "bottom-centre":
        assert y + bh > 0.8 * h  # below the face
    else:
        assert y < 0.25 * h
    # the other elements stay in the frame and do not overlap the badge
    for other in (sprites.corner, sprites.banner):
        ox, oy, ow, oh = other.rect
        assert 0 <= ox and ox + ow <= w and 0 <= oy and oy + oh <= h
        assert ox + ow <= x or x + bw <= ox or oy + oh <= y or y + bh <= oy
    # wide frames: the banner keeps off the band where the avatar's face is (rows 28-75 %)
    bx, by2, bw2, bh2 = sprites.banner.rect
    if w >= 1.6 * h:
        if position == "bottom-centre":
            assert by2 + bh2 <= 0.28 * h + 1
        else:
            assert by2 >= 0.75 * h - 1
    else:  # 4:3 and portrait: in the centre column, stacked on the badge
        assert bx >= (w - min(w, h)) / 2 and bx + bw2 <= (w + min(w, h)) / 2


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_badge_keeps_clear_of_the_sample_avatars_chin(size):
    """What lies just under the chin changes how a face tracker reads the face (see ``_EDGE`` in
    label.py): on 16:9 frames the badge starts at least 3 % of the height below the chin of the
    bundled avatar as the renderer frames it."""
    from vcam_me.app import BUNDLED_AVATAR
    from vcam_me.avatar import Avatar
    from vcam_me.avatar import mesh as M
    from vcam_me.avatar.renderer import frame_portrait

    avatar = Avatar.load(BUNDLED_AVATAR)
    _, affine = frame_portrait(avatar.image, avatar.landmarks, size)
    chin = affine[:, :2] @ M.landmarks_to_pixels(avatar.landmarks, avatar.image_size)[M.CHIN, :2] + affine[:, 2]
    _, y, _, _ = render_label_sprites(size, LabelOptions(), consent_code=CODE).badge.rect
    assert y - chin[1] >= 0.03 * size[1]


@pytest.mark.parametrize("size", SIZES)
def test_cap_height_at_least_5_percent(size):
    h = size[1]
    sprites = render_label_sprites(size, consent_code=CODE)
    assert sprites.primary_cap_px >= math.ceil(0.05 * h)
    # the wide banner may go a little smaller (4.5 %) to stay off the face
    assert sprites.banner_cap_px >= math.ceil(0.045 * min(size))
    # measured in pixels: the "A" that starts the badge, and the corner "AI"
    out = apply_label(_scene(size), sprites)
    badge_a = _first_line_boxes(_crop(out, sprites.badge.rect))[0]
    corner = _first_line_boxes(_crop(out, sprites.corner.rect))
    assert badge_a[3] >= math.ceil(0.05 * h) - 1
    assert max(b[3] for b in corner) >= math.ceil(0.05 * h) - 1


def test_reads_unmirrored():
    """'A' then a narrow 'I' from left to right, in the corner mark and at the start of the badge."""
    sprites = render_label_sprites((1280, 720), consent_code=CODE)
    out = apply_label(_scene((1280, 720)), sprites)
    for rect in (sprites.corner.rect, sprites.badge.rect):
        first, second = _first_line_boxes(_crop(out, rect))[:2]
        assert first[2] > 2 * second[2]  # A is wide, I is a narrow bar
        assert first[0] < second[0]
        mirrored = _first_line_boxes(_crop(out, rect)[:, ::-1])
        assert not mirrored[0][2] > 2 * mirrored[1][2]  # the check itself tells a mirror apart


def test_legible_after_downscale_to_360p():
    size = (1280, 720)
    sprites = render_label_sprites(size, consent_code=CODE)
    scene = _scene(size)
    labelled = apply_label(scene, sprites)
    small = cv2.resize(labelled, (640, 360), interpolation=cv2.INTER_AREA)
    small_plain = cv2.resize(scene, (640, 360), interpolation=cv2.INTER_AREA)
    region = _crop(small, sprites.badge.rect, 0.5)
    plain = _crop(small_plain, sprites.badge.rect, 0.5)
    # the label region differs strongly from the unlabelled picture
    assert float(np.abs(region.astype(int) - plain.astype(int)).mean()) > 40
    # glyphs: the first capital is still ≥ 18 px (5 % of 360) tall, and white on dark
    line = _first_line_boxes(region)
    assert line[0][3] >= 18
    luma = region.astype(np.float32).mean(axis=2)
    assert np.percentile(luma, 99) - np.median(luma) > 120
    # every word of the first line survives as separate glyphs ("AI-generated": ≥ 10 pieces)
    assert len(line) >= 10


@pytest.mark.parametrize("background", [0, 128, 255])
def test_contrast_on_any_background(background):
    sprites = render_label_sprites((1280, 720), consent_code=CODE)
    image = np.full((720, 1280, 3), background, np.uint8)
    region = _crop(apply_label(image, sprites), sprites.badge.rect)
    luma = region.astype(np.float32).mean(axis=2)
    assert luma.max() >= 250  # white text
    assert np.median(luma) <= 0.4 * background + 0.65 * 18 + 2  # 60–70 % dark backing


@pytest.mark.parametrize("opacity", [0.6, 0.95])
def test_backing_opacity_option(opacity):
    sprites = render_label_sprites((1280, 720), LabelOptions(backing_opacity=opacity))
    backing_alpha = np.median(sprites.badge.alpha)
    assert abs(backing_alpha / 255 - opacity) < 0.02


# -- the pure function -------------------------------------------------------------------------
def test_apply_label_is_pure_and_touches_only_its_rectangles():
    sprites = render_label_sprites((640, 360), consent_code=CODE)
    scene = _scene((640, 360))
    before = scene.copy()
    out = apply_label(scene, sprites, banner=True)
    np.testing.assert_array_equal(scene, before)
    touched = np.zeros(scene.shape[:2], bool)
    for s in (sprites.badge, sprites.corner, sprites.banner):
        x, y, w, h = s.rect
        touched[y:y + h, x:x + w] = True
    np.testing.assert_array_equal(out[~touched], scene[~touched])
    assert not np.array_equal(out[touched], scene[touched])
    # blend accuracy against a float reference
    ref = scene.astype(np.float64)
    for s in (sprites.badge, sprites.corner, sprites.banner):
        x, y, w, h = s.rect
        a = s.alpha[..., None] / 255.0
        ref[y:y + h, x:x + w] = ref[y:y + h, x:x + w] * (1 - a) + s.rgb * a
    assert np.abs(out.astype(int) - np.rint(ref).astype(int)).max() <= 2


def test_apply_label_in_place_and_misuse():
    sprites = render_label_sprites((640, 360))
    scene = _scene((640, 360))
    assert apply_label(scene, sprites, out=scene) is scene
    with pytest.raises(ValueError, match="size"):
        apply_label(_scene((1280, 720)), sprites)
    with pytest.raises(TypeError):
        apply_label(scene.astype(np.float32), sprites)


# -- the stamper and banner timing ------------------------------------------------------------
def _banner_shown(stamper, t_ms, size=(640, 360)):
    sprites = stamper.sprites_for(size)
    frame = RenderedFrame(np.full((size[1], size[0], 3), 128, np.uint8), t_ms)
    out = stamper.stamp(frame).image
    x, y, w, h = sprites.banner.rect
    return bool(np.any(out[y:y + h, x:x + w] != 128))


def test_banner_at_start_for_banner_seconds():
    stamper = LabelStamper.create((640, 360), LabelOptions(banner_seconds=2.0), consent_code=CODE)
    shown = {t: _banner_shown(stamper, t) for t in range(5000, 8000, 100)}
    assert all(shown[t] for t in range(5000, 7000, 100))  # ≥ 2 s from the first frame
    assert not any(shown[t] for t in range(7000, 8000, 100))


def test_banner_again_after_restart_and_periodically():
    stamper = LabelStamper.create((640, 360), LabelOptions(banner_seconds=3.0), banner_repeat_s=20.0)
    assert _banner_shown(stamper, 0)
    assert not _banner_shown(stamper, 3000)
    assert not _banner_shown(stamper, 10_000)
    stamper.restart_banner(12_000)  # camera reconnected
    assert stamper.banner_visible(12_000) and stamper.banner_visible(14_999)
    assert _banner_shown(stamper, 12_000) and _banner_shown(stamper, 14_900)
    assert not _banner_shown(stamper, 15_000)
    assert not _banner_shown(stamper, 31_000)
    assert _banner_shown(stamper, 32_000)  # 20 s after the last showing
    assert not _banner_shown(stamper, 35_100)


def test_stamp_is_in_place_and_copies_read_only_frames():
    stamper = LabelStamper.create((640, 360), consent_code=CODE)
    image = _scene((640, 360))
    frame = RenderedFrame(image, 0, 5)
    assert stamper.stamp(frame) is frame
    read_only = _scene((640, 360))
    original = read_only.copy()
    read_only.flags.writeable = False
    stamped = stamper.stamp(RenderedFrame(read_only, 10, 5))
    np.testing.assert_array_equal(read_only, original)
    assert stamped.timestamp_ms == 10 and stamped.source_timestamp_ms == 5
    assert not np.array_equal(stamped.image, original)
    with pytest.raises(TypeError):
        stamper.stamp(RenderedFrame(np.zeros((360, 640), np.uint8), 0))


def test_stamp_writes_through_strided_views():
    big = _scene((1280, 360))
    view = big[:, ::2]  # (360, 640, 3) with a 6-byte pixel step
    plain = view.copy()
    stamper = LabelStamper.create((640, 360), consent_code=CODE)
    out = stamper.stamp(RenderedFrame(view, 0)).image
    assert out is view
    expected = apply_label(plain, stamper.sprites_for((640, 360)), banner=True)
    np.testing.assert_array_equal(view, expected)


def test_stamp_any_size_and_change_consent():
    stamper = LabelStamper.create((640, 360))
    stamper.stamp(RenderedFrame(_scene((1280, 720)), 0))  # another size: sprites made on demand
    assert stamper.sprites_for((1280, 720)).size == (1280, 720)
    stamper.set_consent("abcd2345", "Jane Doe")
    assert stamper.consent_code == "ABCD-2345"
    assert stamper.sprites_for((640, 360)).badge_lines[-1] == "Consent ID ABCD-2345"
    assert "Jane Doe" in " ".join(stamper.sprites_for((1280, 720)).banner_lines)


def test_label_cannot_be_disabled():
    assert {f.name for f in dataclasses.fields(LabelOptions)} == {"position", "backing_opacity", "banner_seconds"}
    for name in ("enabled", "visible", "show", "disable", "hidden"):
        with pytest.raises(ConfigError, match="cannot be switched off"):
            config_from_dict({"label": {name: False}})
    for fn in (LabelStamper.__init__, LabelStamper.create, render_label_sprites, apply_label):
        params = set(inspect.signature(fn).parameters)
        assert not params & {"enabled", "enable", "disable", "disabled", "visible", "show", "hidden"}
    with pytest.raises(ValueError):
        LabelStamper(LabelOptions(banner_seconds=3.0), banner_repeat_s=2.0)


def test_label_survives_h264_at_360p(tmp_path):
    """Label a 720p frame, downscale to 360p, encode with strong compression, decode: still legible."""
    import av

    from vcam_me.output import RecorderSink

    sprites = render_label_sprites((1280, 720), consent_code=CODE)
    small = cv2.resize(apply_label(_scene((1280, 720)), sprites), (640, 360), interpolation=cv2.INTER_AREA)
    path = tmp_path / "low.mp4"
    with RecorderSink.open(path, (640, 360), 30, crf=38, preset="ultrafast") as sink:
        for i in range(3):
            sink.send(RenderedFrame(small, i))
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][-1]
    region = _crop(decoded, sprites.badge.rect, 0.5)
    line = _first_line_boxes(region)
    assert line[0][3] >= 17 and len(line) >= 10
