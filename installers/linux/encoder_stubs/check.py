"""Check PyAV with the stand-in encoder libraries (run by installers/linux/build.sh).

Usage: python check.py   (with PYTHONPATH pointing at a copy of `av` whose av.libs holds the stand-ins)

Exits 0 when H.264 still encodes and decodes and asking for libx265 or libsvtav1 fails with
PyAV's error (no crash); prints what it found.
"""

import io
import sys

import av
import numpy as np


def encode(codec: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            image = np.full((48, 64, 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


data = encode("libx264")
with av.open(io.BytesIO(data)) as container:
    frames = sum(1 for _ in container.decode(video=0))
if frames != 5:
    sys.exit(f"check: H.264 round trip gave {frames} frames, not 5")
print(f"check: libx264 encodes and decodes ({len(data)} bytes, {frames} frames)")
for codec in ("libx265", "libsvtav1"):
    try:
        encode(codec)
    except av.error.FFmpegError as err:
        print(f"check: {codec} refused cleanly: {type(err).__name__}: {err}")
    else:
        sys.exit(f"check: {codec} still encodes: the stand-in is not in use")
