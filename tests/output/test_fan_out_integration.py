"""Label → fan-out → virtual camera (real pyvirtualcam.Camera), recorder and memory, together."""

from __future__ import annotations

import av
import numpy as np

from vcam_me.config import OutputOptions
from vcam_me.consent import LabelStamper
from vcam_me.output import FanOutSink, MemorySink, RecorderSink, VirtualCameraSink
from vcam_me.types import RenderedFrame

from ..helpers import KeepingBackend, registered_backend


def test_every_sink_gets_the_labelled_frames(tmp_path):
    size, fps, n = (640, 360), 30, 12
    with registered_backend("vcam-me-keep", KeepingBackend):
        stamper = LabelStamper.create(size, consent_code="7KQ4M2XD")
        memory = MemorySink()
        path = tmp_path / "all.mp4"
        with FanOutSink([
            VirtualCameraSink.open(size, fps, OutputOptions(virtualcam_backend="vcam-me-keep")),
            RecorderSink.open(path, size, fps),
            memory,
        ]) as fan:
            for i in range(n):
                image = np.full((size[1], size[0], 3), 100 + i, np.uint8)
                fan.send(stamper.stamp(RenderedFrame(image, i * 33)))
    badge = stamper.sprites_for(size).badge
    x, y, w, h = badge.rect
    (camera,) = KeepingBackend.instances
    assert len(camera.frames) == len(memory.frames) == n
    for i, (cam, kept) in enumerate(zip(camera.frames, memory.images)):
        np.testing.assert_array_equal(cam, kept)
        assert kept[y:y + h, x:x + w].max() == 255  # white label text
        assert kept[5, 5, 0] == 100 + i  # picture untouched outside the label
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == n
    assert decoded[-1][y:y + h, x:x + w].max() > 230
