"""Train the generic transfer-network prior by self-reenactment, then export it to ONNX.

    python -m vcam_me.training.train_prior --clips ../shared/data/driving/liveportrait_d0.mp4 ... \\
        --steps 1000 --out /tmp/prior

Data: :mod:`vcam_me.training.reenact_data` (a clip's rest frame warped to its other frames).
Losses, all computable offline (no pretrained weights):
  - L1 on the face (inside the target's face oval; 0.1 weight outside),
  - L1 over a 4-level Laplacian pyramid of the same masked images (edges and texture at
    several scales: the "perceptual-style" term),
  - L1 on the geometry head's mesh displacements (canonical IOD units, ×10),
  - L1 of the ungated residual (warped + residual, as if the mask were 1), so the residual
    learns while the mask is still closed,
  - a small penalty on the mask's mean, so the residual stays where the warp is wrong.
Batches are drawn from an RNG seeded by ``(seed, step)``, so a run resumed from a checkpoint
continues exactly as an uninterrupted one. The checkpoint (``OUT/checkpoint.pt``) is written
to a temporary file and renamed, every ``--checkpoint-every`` steps and on Ctrl-C.
At the end: ``OUT/appearance.onnx``, ``OUT/geometry.onnx`` and the part of the geometry head
the runtime adds to the AU basis, ``OUT/geometry_refinement.onnx`` (opset :data:`OPSET`), their
parity with PyTorch under onnxruntime (CPU, one thread), an optional int8 (QDQ, static,
calibrated on training crops) ``OUT/appearance.int8.onnx``, the median latency per call, and
all figures in ``OUT/report.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vcam_me.errors import VcamError
from vcam_me.storage import atomic_write_bytes
from vcam_me.training.reenact_data import (
    CROP_SIZE,
    N_CONDITION,
    ClipSamples,
    load_clip,
    mirror_condition,
    mirror_displacement,
)
from vcam_me.training.transfer_net import GeometryRefinement, NetConfig, TransferNet, composite, count_macs

log = logging.getLogger(__name__)

OPSET = 17
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainData:
    """All clips' samples stacked: images ``(N, 3, S, S) uint8``, masks ``(N, 1, S, S)``, etc."""

    warped: np.ndarray
    target: np.ndarray
    face_mask: np.ndarray
    condition: np.ndarray
    displacement: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    @classmethod
    def stack(cls, clips: list[ClipSamples]) -> TrainData:
        return cls(
            warped=np.concatenate([c.warped for c in clips]).transpose(0, 3, 1, 2).copy(),
            target=np.concatenate([c.target for c in clips]).transpose(0, 3, 1, 2).copy(),
            face_mask=np.concatenate([c.face_mask for c in clips])[:, None].copy(),
            condition=np.concatenate([c.condition for c in clips]),
            displacement=np.concatenate([c.displacement for c in clips]),
        )

    def spread(self, at_most: int) -> TrainData:
        """At most ``at_most`` samples, evenly spread over all of them (a quick report)."""
        if len(self) <= at_most:
            return self
        index = np.linspace(0, len(self) - 1, at_most).round().astype(int)
        return TrainData(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def batch(self, index: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """The samples at ``index`` as float tensors; with ``rng``, augmented (:func:`augment`)."""
        warped, target = self.warped[index], self.target[index]
        mask, condition, displacement = self.face_mask[index], self.condition[index], self.displacement[index]
        out = {
            "warped": torch.from_numpy(warped).float() / 255.0,
            "target": torch.from_numpy(target).float() / 255.0,
            "mask": torch.from_numpy(mask).float(),
            "condition": torch.from_numpy(condition),
            "displacement": torch.from_numpy(displacement),
        }
        return out if rng is None else augment(out, rng)


#: Colour augmentation: per-sample, per-channel gain and offset, the same for the warped
#: reference and the target (a different camera or light, the same face motion).
COLOUR_GAIN = (0.75, 1.25)
COLOUR_OFFSET = 0.08


def augment(b: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Mirror half the samples left↔right (images, mask, conditioning sides and mesh) and
    jitter every sample's colour. 14 people are few: without this the prior learns the
    clips, not the motion (held-out face L1 got worse than the plain warp)."""
    n = b["target"].shape[0]
    flip = torch.from_numpy(rng.random(n) < 0.5)
    out = dict(b)
    if bool(flip.any()):
        for key in ("warped", "target", "mask"):
            x = out[key].clone()
            x[flip] = x[flip].flip(-1)
            out[key] = x
        f = flip.numpy()
        cond, disp = out["condition"].numpy().copy(), out["displacement"].numpy().copy()
        cond[f] = mirror_condition(cond[f])
        disp[f] = mirror_displacement(disp[f])
        out["condition"], out["displacement"] = torch.from_numpy(cond), torch.from_numpy(disp)
    gain = torch.from_numpy(rng.uniform(*COLOUR_GAIN, size=(n, 3, 1, 1)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-COLOUR_OFFSET, COLOUR_OFFSET, size=(n, 3, 1, 1)).astype(np.float32))
    for key in ("warped", "target"):
        out[key] = (out[key] * gain + offset).clamp(0.0, 1.0)
    return out


def laplacian_pyramid(x: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """Band-pass images (finest first) and the low-pass residual of ``(B, C, H, W)``."""
    out = []
    for _ in range(levels - 1):
        low = F.avg_pool2d(x, 2)
        out.append(x - F.interpolate(low, scale_factor=2.0, mode="bilinear", align_corners=False))
        x = low
    return out + [x]


#: Weight of the ungated residual term and of the mask's mean (see :func:`losses`).
RESIDUAL_WEIGHT = 0.5
MASK_WEIGHT = 0.001


def losses(net: TransferNet, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    displacement, residual, mask = net(b["warped"], b["condition"])
    face = composite(b["warped"], residual, mask)
    weight = 0.1 + 0.9 * b["mask"]
    terms = {
        "l1": (weight * (face - b["target"]).abs()).mean(),
        "pyramid": sum((pf - pt).abs().mean() for pf, pt in zip(laplacian_pyramid(face * weight), laplacian_pyramid(b["target"] * weight))),
        "geometry": 10.0 * (displacement - b["displacement"]).abs().mean(),
        # The residual on its own (as if the mask were 1), so it learns even while the mask is
        # near 0: without it the mask (which starts at 0.02 and gates the residual's gradient)
        # collapsed to 0 on the first full run and the head never learned anything.
        "residual": RESIDUAL_WEIGHT * (weight * (b["warped"] + residual - b["target"]).abs()).mean(),
        "mask": MASK_WEIGHT * mask.mean(),
    }
    terms["total"] = sum(terms.values())
    return terms


def batch_index(n: int, batch: int, seed: int, step: int) -> np.ndarray:
    return np.random.default_rng([seed, step]).integers(0, n, size=batch)


def save_checkpoint(path: Path, net: TransferNet, optimiser: torch.optim.Optimizer, step: int, history: list, settings: dict) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
                "history": history, "settings": settings, "net_config": asdict(net.config)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class DamagedCheckpoint(VcamError):
    """A checkpoint file that cannot be read (truncated or altered): never used."""


def load_checkpoint(path: Path, net: TransferNet, optimiser: torch.optim.Optimizer, settings: dict) -> tuple[int, list]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or not {"model", "optimiser", "step", "history", "settings"} <= state.keys():
            raise ValueError("not a training checkpoint")
    except Exception as err:  # torch raises many kinds (RuntimeError, UnpicklingError, EOFError …)
        raise DamagedCheckpoint(f"checkpoint {path} is damaged ({' '.join(str(err).split())[:120]})") from None
    if state["settings"] != settings:
        diff = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
        raise VcamError(f"{path} was made with other settings (checkpoint, now): {diff}; use another --out or --fresh")
    net.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    return int(state["step"]), list(state["history"])


class Progress:
    """One status line on stderr with steps/s and time left (rewritten in place on a terminal)."""

    def __init__(self, total: int, start: int) -> None:
        self.total, self.start, self.t0 = total, start, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def update(self, step: int, loss: float) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last_print < 10.0 and step < self.total:
            return
        self.last_print = now
        rate = (step - self.start) / max(now - self.t0, 1e-9)
        left = (self.total - step) / rate if rate > 0 else float("inf")
        mins, secs = divmod(int(left), 60) if np.isfinite(left) else (0, 0)
        line = f"step {step}/{self.total}  loss {loss:.4f}  {rate:.2f} steps/s  {mins}m{secs:02d}s left"
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def train(net: TransferNet, optimiser: torch.optim.Optimizer, data: TrainData, *, steps: int, start: int = 0,
          batch: int = 8, seed: int = 0, history: list | None = None, on_step=None,
          augmented: bool = False, device: str = "cpu") -> list[dict[str, float]]:
    """Run steps ``start … steps-1``; returns the history (one dict of loss terms per step).

    ``on_step(step, history)`` is called after each step; it may raise to stop (a resumed run
    continues from the last checkpoint exactly: batches and augmentation come from an RNG
    seeded by ``(seed, step)``).
    """
    history = [] if history is None else history
    net.train()
    for step in range(start, steps):
        rng = np.random.default_rng([seed, step, 1]) if augmented else None
        b = data.batch(batch_index(len(data), batch, seed, step), rng)
        terms = losses(net, {k: v.to(device) for k, v in b.items()} if device != "cpu" else b)
        optimiser.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimiser.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
        if on_step is not None:
            on_step(step + 1, history)
    return history


def face_l1(net: TransferNet, data: TrainData, batch: int = 16) -> dict[str, float]:
    """Mean |face − target| inside the face oval (0–255 scale): the plain warp and the network's."""
    net.eval()
    sums = {"warp_only": 0.0, "network": 0.0}
    pixels = 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch):
            b = data.batch(np.arange(start, min(start + batch, len(data))))
            _, residual, mask = net(b["warped"], b["condition"])
            face = composite(b["warped"], residual, mask)
            m = b["mask"]
            sums["warp_only"] += float((m * (b["warped"] - b["target"]).abs()).sum())
            sums["network"] += float((m * (face - b["target"]).abs()).sum())
            pixels += 3.0 * float(m.sum())
    return {k: 255.0 * v / max(pixels, 1.0) for k, v in sums.items()}


# --- export ---------------------------------------------------------------------------------------

def _to_onnx(module: torch.nn.Module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str]) -> Path:
    # The TorchScript exporter: the newer torch.export-based one needs onnxscript, one more
    # dependency for a graph of plain convolutions that this one exports exactly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names,
                          opset_version=OPSET, dynamo=False)
    return path


def export_onnx(net: TransferNet, out_dir: Path, size: int = CROP_SIZE) -> tuple[Path, Path]:
    """``appearance.onnx`` (warped, condition → residual, mask) and ``geometry.onnx`` (condition → displacement)."""
    net.eval()
    warped = torch.rand(1, 3, size, size)
    cond = torch.zeros(1, net.config.n_condition)
    appearance = _to_onnx(net.appearance, (warped, cond), out_dir / "appearance.onnx", ["warped", "condition"],
                          ["residual", "mask"])
    geometry = _to_onnx(net.geometry, (cond,), out_dir / "geometry.onnx", ["condition"], ["displacement"])
    return appearance, geometry


def export_geometry_refinement(net: TransferNet, out_dir: Path) -> Path:
    """``geometry_refinement.onnx``: condition → what the runtime adds to the AU basis
    (:class:`~vcam_me.training.transfer_net.GeometryRefinement`)."""
    net.eval()
    return _to_onnx(GeometryRefinement(net.geometry), (torch.zeros(1, net.config.n_condition),),
                    out_dir / "geometry_refinement.onnx", ["condition"], ["displacement"])


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_parity(net: TransferNet, appearance: Path, geometry: Path, data: TrainData, n: int = 4) -> dict[str, float]:
    """Max |ONNX − PyTorch| over ``n`` real samples, per output."""
    net.eval()
    sa, sg = ort_session(appearance), ort_session(geometry)
    worst = {"residual": 0.0, "mask": 0.0, "displacement": 0.0}
    for i in range(min(n, len(data))):
        b = data.batch(np.array([i]))
        with torch.no_grad():
            disp, res, mask = net(b["warped"], b["condition"])
        o_res, o_mask = sa.run(None, {"warped": b["warped"].numpy(), "condition": b["condition"].numpy()})
        (o_disp,) = sg.run(None, {"condition": b["condition"].numpy()})
        worst["residual"] = max(worst["residual"], float(np.abs(o_res - res.numpy()).max()))
        worst["mask"] = max(worst["mask"], float(np.abs(o_mask - mask.numpy()).max()))
        worst["displacement"] = max(worst["displacement"], float(np.abs(o_disp - disp.numpy()).max()))
    return worst


def quantize_int8(appearance: Path, data: TrainData, n_calibration: int = 32) -> Path:
    """Static int8 (QDQ, per-channel weights) of the appearance head, calibrated on real crops.

    The first convolution (on the image itself) and the last (the residual and mask logits)
    stay fp32: quantising them tripled the error of the composited face (measured on the
    first trained prior: mean 1.6 → 0.55, p99 22 → 6.5 grey levels) for no measurable speed.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            idx = np.linspace(0, len(data) - 1, min(n_calibration, len(data))).astype(int)
            self.items = iter([{"warped": data.batch(np.array([i]))["warped"].numpy(),
                                "condition": data.condition[i:i + 1]} for i in idx])

        def get_next(self):
            return next(self.items, None)

    convs = [n.name for n in onnx.load(str(appearance)).graph.node if n.op_type == "Conv"]
    out = appearance.with_name("appearance.int8.onnx")
    # onnxruntime's quantiser logs a generic "consider pre-processing" advice on the root
    # logger at every call; the graph is plain convolutions, so it has nothing to add here.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(str(appearance), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=[convs[0], convs[-1]])
    finally:
        root.setLevel(level)
    return out


def latency_ms(model: Path, size: int = CROP_SIZE, calls: int = 100) -> float:
    """Median wall time of one call, one thread, after 5 warm-up calls."""
    feed = {"warped": np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32),
            "condition": np.zeros((1, N_CONDITION), np.float32)}
    return _median_call_ms(ort_session(model), feed, calls, warmup=5)


def _median_call_ms(session, feed: dict, calls: int, warmup: int = 0) -> float:
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


# --- command line ---------------------------------------------------------------------------------

def _clip_paths(items: list[str]) -> list[Path]:
    out: list[Path] = []
    for item in items:
        p = Path(item)
        out.extend(sorted(p.glob("*.mp4")) if p.is_dir() else [p])
    if not out:
        raise VcamError("no clips given (--clips takes .mp4 files or folders of them)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", nargs="+", required=True, help="face videos (one person each) or folders of .mp4")
    ap.add_argument("--holdout", nargs="*", default=[], help="clips not trained on, only scored (face L1 in the report)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (required unless --export-from)")
    ap.add_argument("--export-from", type=Path, default=None, metavar="PRIOR.pt",
                    help="train nothing: export this trained state dict (e.g. models/transfer_prior.pt) to ONNX "
                         "with the current code, calibrating --int8 on the --clips recipe")
    ap.add_argument("--out", type=Path, required=True, help="folder for the checkpoint, ONNX files and report.json")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-frames", type=int, default=150, help="tracked frames per clip")
    ap.add_argument("--stride", type=int, default=3, help="use every n-th video frame")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads")
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--cache-dir", type=Path, default=None, help="extracted-clip cache (default: user cache folder)")
    ap.add_argument("--no-basis", action="store_true", help="start the geometry head at zero, not the shipped AU basis")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out (it is overwritten)")
    ap.add_argument("--int8", action="store_true", help="also write a statically quantised appearance head")
    ap.add_argument("--latency-calls", type=int, default=100)
    ap.add_argument("--split", type=float, default=None,
                    help="train on the first SPLIT fraction of each clip's frames only; report face L1 on the rest")
    ap.add_argument("--no-augment", action="store_true", help="no mirroring or colour jitter")
    ap.add_argument("--widths", type=int, nargs=4, default=list(NetConfig.widths), metavar="W",
                    help="U-Net channels of its four levels, finest first (default: %(default)s)")
    ap.add_argument("--stem", choices=("full", "shuffle"), default=NetConfig.stem,
                    help="finest level at the crop's resolution, or at half of it through pixel (un)shuffle "
                         "(default: %(default)s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(args)
    except VcamError as err:
        print(f"train_prior: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.export_from is None and args.steps is None:
        raise VcamError("--steps is required (or --export-from PRIOR.pt to export trained weights)")
    if args.export_from is not None and not args.export_from.is_file():
        raise VcamError(f"--export-from {args.export_from}: no such file")
    if (args.steps is not None and args.steps < 1) or args.batch < 1:
        raise VcamError(f"--steps and --batch must be ≥ 1, got {args.steps}, {args.batch}")
    clips = _clip_paths(args.clips)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = []
    for c in clips:
        s = load_clip(c, max_frames=args.max_frames, stride=args.stride, cache_dir=args.cache_dir,
                      split=args.split, part="all" if args.split is None else "first")
        log.info("%s: %d targets, rest frame %d", c.name, len(s), s.reference_index)
        samples.append(s)
    data = TrainData.stack(samples)
    settings = {"clips": [c.name for c in clips], "batch": args.batch, "lr": args.lr, "seed": args.seed,
                "max_frames": args.max_frames, "stride": args.stride, "basis": not args.no_basis,
                "split": args.split, "augment": not args.no_augment}

    if args.export_from is not None:
        # Exporting again (the network's code changed in a way that keeps its function, or
        # the exporter did): the weights are the trained ones, untouched.
        from vcam_me.training.personalise import load_prior

        net = load_prior(args.export_from)  # in the shape it was trained in; --widths and --stem do not apply
        settings["exported_from"] = str(args.export_from)
        settings |= {"widths": list(net.config.widths), "stem": net.config.stem}
        return _report_and_export(args, net, data, clips, [], settings)
    # Always recorded: a checkpoint of another shape is refused by name, not by a failed load.
    settings |= {"widths": list(args.widths), "stem": args.stem}
    basis = None
    if not args.no_basis:
        from vcam_me.models import verified_model_path

        with np.load(verified_model_path("au_basis")) as z:
            basis = z["basis"]
    torch.manual_seed(args.seed)
    net = TransferNet(NetConfig(widths=tuple(args.widths), stem=args.stem), basis)
    optimiser = torch.optim.Adam(net.parameters(), lr=args.lr)
    ckpt = args.out / CHECKPOINT
    start, history = 0, []
    if ckpt.is_file() and not args.fresh:
        start, history = load_checkpoint(ckpt, net, optimiser, settings)
        log.info("resuming from %s at step %d", ckpt, start)

    progress = Progress(args.steps, start)

    def on_step(step: int, hist: list) -> None:
        progress.update(step, hist[-1]["total"])
        if step % args.checkpoint_every == 0:
            save_checkpoint(ckpt, net, optimiser, step, hist, settings)

    try:
        train(net, optimiser, data, steps=args.steps, start=start, batch=args.batch, seed=args.seed,
              history=history, on_step=on_step, augmented=not args.no_augment)
    except KeyboardInterrupt:
        progress.close()
        save_checkpoint(ckpt, net, optimiser, len(history), history, settings)
        print(f"interrupted at step {len(history)}; run the same command to resume", file=sys.stderr)
        return 130
    progress.close()
    save_checkpoint(ckpt, net, optimiser, len(history), history, settings)
    return _report_and_export(args, net, data, clips, history, settings)


def _report_and_export(args: argparse.Namespace, net: TransferNet, data: TrainData, clips: list[Path],
                       history: list, settings: dict) -> int:
    """Score ``net`` (face L1 in sample, on held-back parts and hold-out clips), export it to
    ONNX (and int8 with ``--int8``) in ``args.out``, write ``report.json``."""
    net.eval()
    size = data.target.shape[-1]
    x, c = torch.rand(1, 3, size, size), torch.zeros(1, N_CONDITION)
    report: dict = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "settings": settings, "samples": len(data), "steps": len(history),
    }
    if history:
        report |= {"loss_first": history[0], "loss_last": history[-1],
                   "loss_last_50_mean": float(np.mean([h["total"] for h in history[-50:]]))}
    report |= {
        "appearance_gmac": count_macs(net.appearance, x, c) / 1e9,
        "geometry_mmac": count_macs(net.geometry, c) / 1e6,
        "face_l1_in_sample": face_l1(net, data),
    }
    if args.split is not None:
        report["face_l1_held_back_part"] = {
            c.name: face_l1(net, TrainData.stack([load_clip(c, max_frames=args.max_frames, stride=args.stride,
                                                             cache_dir=args.cache_dir, split=args.split, part="rest")]))
            for c in clips}
    if args.holdout:
        held = [load_clip(c, max_frames=args.max_frames, stride=args.stride, cache_dir=args.cache_dir)
                for c in _clip_paths(args.holdout)]
        report["face_l1_holdout"] = {s.clip.name: face_l1(net, TrainData.stack([s])) for s in held}
    appearance, geometry = export_onnx(net, args.out, size)
    report["onnx_parity_max_abs"] = onnx_parity(net, appearance, geometry, data)
    report["latency_ms_fp32_1thread_median"] = latency_ms(appearance, size, args.latency_calls)
    report["geometry_latency_ms_1thread_median"] = _geometry_latency(geometry, args.latency_calls)
    refinement = export_geometry_refinement(net, args.out)
    report["geometry_refinement_latency_ms_1thread_median"] = _geometry_latency(refinement, args.latency_calls)
    if args.int8:
        int8 = quantize_int8(appearance, data)
        report["latency_ms_int8_1thread_median"] = latency_ms(int8, size, args.latency_calls)
        report["int8_vs_fp32_face_abs_255"] = _int8_error(appearance, int8, data)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


def _geometry_latency(geometry: Path, calls: int) -> float:
    return _median_call_ms(ort_session(geometry), {"condition": np.zeros((1, N_CONDITION), np.float32)}, calls)


def _int8_error(fp32: Path, int8: Path, data: TrainData, n: int = 16) -> dict[str, float]:
    """|int8 − fp32| of the composited face (0–255 scale) over ``n`` real samples."""
    a, b = ort_session(fp32), ort_session(int8)
    diffs = []
    for i in np.linspace(0, len(data) - 1, min(n, len(data))).astype(int):
        warped = data.batch(np.array([i]))["warped"].numpy()
        feed = {"warped": warped, "condition": data.condition[i:i + 1]}
        faces = [np.clip(warped + mask * residual, 0.0, 1.0) for residual, mask in (a.run(None, feed), b.run(None, feed))]
        diffs.append(255.0 * np.abs(faces[0] - faces[1]).ravel())
    d = np.concatenate(diffs)
    return {"mean": float(d.mean()), "p99": float(np.percentile(d, 99)), "max": float(d.max())}


if __name__ == "__main__":
    sys.exit(main())
