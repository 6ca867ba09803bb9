"""The transfer network's geometry head at run time: what it adds to the fixed AU basis.

design.md §4 gives the network two heads; the geometry head maps the conditioning (driving
AUs, gaze, head pose) to displacements of the pose-normalised mesh. With ``[avatar] geometry =
"network"`` the renderer keeps the fitted AU basis, with the closed-loop gains and cross-talk
mixing calibrated for it, and adds the head's non-linear part (``geometry_refinement.onnx``, exported by
:func:`vcam_me.training.train_prior.export_geometry_refinement`): what a linear map cannot
say, such as how a smile changes when the jaw is open, or how the face's mesh reads when the
head is turned. It is anchored at the neutral condition, so an avatar at rest keeps exactly
its own face.

The shipped generic refinement comes with the prior (``models/transfer_geometry_refinement.onnx``);
``vcam-me setup`` exports the owner's own, fine-tuned on their capture, into the avatar folder.
It is a small MLP (≈ 0.4 MMAC), run on the render thread every frame. It is not the default:
on the project's clips it moved fidelity little and cost micro-expressions their side
(benchmarks/README.md, "The geometry head at run time").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcam_me.errors import ModelError
from vcam_me.types import NUM_LANDMARKS


class GeometryRefiner:
    """``condition (1, n_condition) float32`` → ``(478, 3) float32`` displacement in the
    canonical frame (IOD units), added to the AU basis's. Build it with :meth:`load` (I/O);
    the constructor only wraps a ready ONNX Runtime session."""

    def __init__(self, session, n_condition: int) -> None:
        self.session = session
        self.n_condition = n_condition

    @classmethod
    def load(cls, path: str | Path) -> GeometryRefiner:
        """Open ``path`` on the CPU with one thread (it is tiny; the GPU would cost more in
        transfers than it saves). A file that is not this model is a one-line ModelError."""
        from vcam_me.avatar.appearance import open_session
        from vcam_me.avatar.basis import FEATURE_NAMES

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"geometry refinement {path} not found")
        session, _ = open_session(path, device="cpu", threads=1, what="geometry refinement")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        want = len(FEATURE_NAMES) + 3
        if (len(inputs) != 1 or inputs[0].name != "condition" or inputs[0].shape[-1] != want
                or len(outputs) != 1 or list(outputs[0].shape[-2:]) != [NUM_LANDMARKS, 3]):
            raise ModelError(f"geometry refinement {path} does not take a ({want},) condition and give "
                             f"({NUM_LANDMARKS}, 3) displacements; export it again with this version")
        return cls(session, want)

    def __call__(self, condition: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {"condition": condition})
        return out[0]
