"""The GPU paths, checked on a machine with an NVIDIA GPU (none is on the 2-core development machine).

    python benchmarks/gpu_check.py appearance --out benchmarks/results/gpu_appearance.json
    python benchmarks/gpu_check.py setup CAPTURE.mp4 --out benchmarks/results/gpu_setup.json

``appearance``: the shipped appearance network opened exactly as the renderer and ``vcam-me
doctor`` open it (:meth:`AppearanceNet.load` with ``device`` "auto", "gpu" and "cpu"); for each,
the provider ONNX Runtime really runs it on (read back from the session, since onnxruntime-gpu
falls back to the CPU without a word), the median and p99 time of one call over 200 calls,
and the largest difference from the fp32 file on the CPU for the same input. Before that, a
child process opens the same file with ``providers=[CUDA, CPU]`` and nothing preloaded, as
plain onnxruntime code would: the control for :func:`preload_cuda_libraries`.

``setup``: the real set-up (:func:`vcam_me.app.personalise_avatar`, what ``vcam-me setup`` and
the wizard run) of a capture with ``device="auto"``: which device PyTorch fine-tuned on, the
wall time of each stage, and the face L1 before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def check_appearance(calls: int = 200) -> dict:
    import onnxruntime as ort

    from vcam_me.avatar.appearance import CROP_SIZE, AppearanceFiles, AppearanceNet, open_session
    from vcam_me.models import verified_model_path

    files = AppearanceFiles(verified_model_path("transfer_appearance"), verified_model_path("transfer_appearance_int8"))
    control = subprocess.run(
        [sys.executable, "-c", "import sys, onnxruntime as o; s = o.InferenceSession(sys.argv[1], "
         "providers=['CUDAExecutionProvider', 'CPUExecutionProvider']); print(s.get_providers()[0])", str(files.fp32)],
        capture_output=True, text=True, check=False)
    without_preload = (control.stdout.strip().splitlines() or [f"failed: {control.stderr.strip()[-200:]}"])[-1]
    print("a plain session, nothing preloaded:", without_preload, flush=True)
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    reference = AppearanceNet(*open_session(files.fp32, device="cpu"))
    shape = [d if isinstance(d, int) else 1 for d in reference.session.get_inputs()[1].shape]
    condition = (rng.random(shape) * 0.3).astype(np.float32)
    expected = reference(crop, condition)
    runs = {}
    for device in ("auto", "gpu", "cpu"):
        net = AppearanceNet.load(files, device=device, threads=1)
        got = net(crop, condition)
        for _ in range(20):  # warm-up: CUDA kernels are chosen on the first calls
            net(crop, condition)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            net(crop, condition)
            times.append((time.perf_counter() - t0) * 1e3)
        runs[device] = {"provider": net.provider, "session_providers": net.session.get_providers(),
                        "median_ms": round(float(np.median(times)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
                        "max_abs_diff_vs_fp32_cpu": round(float(np.abs(got - expected).max()), 6)}
        print(device, runs[device], flush=True)
    return {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers(),
            "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
            "plain_session_without_preload": without_preload, "runs": runs}


def check_setup(capture: Path) -> dict:
    import torch

    from vcam_me import app
    from vcam_me.training.personalise import torch_device

    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_device_auto": torch_device("auto")}
    stages: dict[str, list[float]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        stages.setdefault(stage, [now, now])[1] = now

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        result = app.personalise_avatar(capture, Path(tmp) / "avatar", device="auto", progress=progress)
        info.update(device_used=result.device, wall_s=round(time.monotonic() - t0, 1), steps=result.steps,
                    checks=result.checks, face_l1=result.face_l1,
                    stages_s={k: round(v[1] - v[0], 1) for k, v in stages.items()})
    print(json.dumps(info, default=str), flush=True)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("appearance")
    a.add_argument("--out", type=Path, default=None)
    s = sub.add_parser("setup")
    s.add_argument("capture", type=Path)
    s.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    result = check_appearance() if args.what == "appearance" else check_setup(args.capture)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
