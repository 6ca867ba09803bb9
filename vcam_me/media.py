"""Checks on image files from the user, before OpenCV decodes them.

OpenCV allocates an image as big as its header claims and lets libpng print its complaints
about a damaged file straight to stderr, beside our one-line message. Pillow reads the header
and walks the file's structure (chunk CRCs for PNG) without decoding it, so a file can be
refused first, with a reason. Both the avatar stage (portraits) and the capture stage (a still
image as the driving source) use this; neither imports the other.
"""

from __future__ import annotations

import io
import warnings

#: Largest image accepted (pixels): above a 50-megapixel phone camera's, far below what would
#: exhaust memory when decoded.
MAX_IMAGE_PIXELS = 100_000_000


def image_problem(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Why the image file ``data`` must not be decoded, or ``None`` to go ahead.

    ``None`` also for a format Pillow does not know: the decoder then has the last word.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    return f"is {width}x{height} pixels, more than {max_pixels // 10**6} megapixels: use a smaller copy"
                probe.verify()
    except Image.DecompressionBombError:
        return f"claims a size of more than {max_pixels // 10**6} megapixels: use a smaller copy"
    except UnidentifiedImageError:
        return None
    except Exception:  # noqa: BLE001 - Pillow's decoders raise many types for a damaged file
        return "is not a readable image (corrupt, truncated or unsupported format)"
    return None
