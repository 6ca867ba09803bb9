"""The header check run before OpenCV decodes a user's image (vcam_me/media.py)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from vcam_me.media import MAX_IMAGE_PIXELS, image_problem


def _png(width: int = 4, height: int = 3, claim: tuple[int, int] | None = None) -> bytes:
    _, png = cv2.imencode(".png", np.full((height, width, 3), 127, np.uint8))
    data = bytearray(png.tobytes())
    if claim:
        struct.pack_into(">II", data, 16, *claim)
        struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_a_whole_image_may_be_decoded() -> None:
    assert image_problem(_png()) is None
    _, jpg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    assert image_problem(jpg.tobytes()) is None


def test_a_damaged_png_is_refused() -> None:
    whole = _png(64, 64)
    assert "not a readable image" in image_problem(whole[: len(whole) - 20])
    flipped = bytearray(whole)
    flipped[45] ^= 0xFF  # inside the image data (IDAT starts at 33): its CRC no longer matches
    assert "not a readable image" in image_problem(bytes(flipped))


def test_a_header_claiming_too_many_pixels_is_refused_without_decoding() -> None:
    assert "12000x12000 pixels" in image_problem(_png(claim=(12_000, 12_000)))
    assert "more than 100 megapixels" in image_problem(_png(claim=(60_000, 60_000)))
    assert image_problem(_png(claim=(100, 100)), max_pixels=50 * 50) is not None
    assert MAX_IMAGE_PIXELS == 100_000_000


def test_a_format_pillow_does_not_know_is_left_to_the_decoder() -> None:
    assert image_problem(b"not an image at all") is None
    assert image_problem(b"") is None
