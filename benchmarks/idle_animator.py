"""Per-frame cost of the idle animator, alone and inside the expression stage.

    .venv/bin/python benchmarks/idle_animator.py                 # writes benchmarks/results/idle_animator.json
    .venv/bin/python benchmarks/idle_animator.py --seconds 10 --out /tmp/idle.json

The idle animator runs once per rendered frame (60 fps) on the render thread, so its cost
comes out of the same budget as the micro-expression engine (≤ 0.3 ms per frame for the
engine; the whole frame has ~16 ms). Scenarios, each ``--seconds`` of 60 fps frames:

* ``face lost``: idle owns the face (weight 1): breathing, blinks, glances, sway, the
  voice-driven jaw reading a microphone level (a meter fed with real espeak-ng speech when
  espeak-ng is installed, else a fixed level) and idle micro-expressions through the real
  engine (12 per minute, so some run);
* ``face present``: live tracking owns the face (weight 0); the animator still advances its
  schedules so it can take over without a jump;
* ``hand-overs``: the face comes and goes every second, so the weight is always ramping.

Timings per frame (median, p99, max) in ms of wall time and of this thread's CPU time (on a
shared machine the wall-time tail is other processes taking the core); medians are the figure.
``composer_state_at`` is :meth:`ExpressionComposer.state_at` with the idle layer, beside the
same composer without it, so the idle layer's share of the stage is visible; its input is a
constant synthetic observation (neutral blendshapes, identity pose) at 30 fps, lost every
other second.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FPS = 60


def _stats(samples_ns: list[int]) -> dict:
    ms = np.asarray(samples_ns, np.float64) / 1e6
    return {"median_ms": round(float(np.median(ms)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "max_ms": round(float(ms.max()), 3)}


def _voice_level(seconds: float):
    """A level meter fed with real speech as render time passes, or a fixed level without espeak-ng."""
    from vcam_me.capture.microphone import Microphone

    exe = shutil.which("espeak-ng")
    if exe is None:
        return (lambda t_ms: None), (lambda: -30.0), "fixed -30 dBFS (espeak-ng not installed)"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        text = "I lost my camera for a moment, but I am still here and I can hear you all. " * 3
        subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True, timeout=60)
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            speech = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    audio = np.tile(np.concatenate([speech, np.zeros(rate, np.int16)]), int(seconds * rate / len(speech)) + 2)
    meter = Microphone(None, rate)
    block = rate // 50
    fed = [0]

    def advance(t_ms: float) -> None:
        while fed[0] + block <= t_ms / 1000 * rate:
            meter.feed(audio[fed[0]:fed[0] + block])
            fed[0] += block

    return advance, meter.level, "espeak-ng speech through the Microphone level meter"


def _frames(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * FPS)) * (1000.0 / FPS)


def time_animator(name: str, seconds: float, face_present, *, with_engine: bool) -> dict:
    from vcam_me.config import IdleOptions
    from vcam_me.expression.idle import IdleAnimator
    from vcam_me.expression.micro import MicroEngine, MicroLibrary

    advance, level, voice = _voice_level(seconds)
    engine = MicroEngine(MicroLibrary.load(), seed=1) if with_engine else None
    animator = IdleAnimator(IdleOptions(micro_per_min=12.0), seed=1, voice_level=level, engine=engine)
    wall, cpu, weights = [], [], []
    for t in _frames(seconds):
        advance(t)  # the audio thread's work, not timed
        present = face_present(t)
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        sample = animator.sample(int(t), present)
        wall.append(time.perf_counter_ns() - w0)
        cpu.append(time.thread_time_ns() - c0)
        weights.append(sample.weight)
    return {"scenario": name, "frames": len(wall), "voice": voice, "mean_weight": round(float(np.mean(weights)), 3),
            "idle_micro_expressions": len(animator.micro_fired), "sample": _stats(wall), "sample_thread_cpu": _stats(cpu)}


def time_composer(seconds: float) -> dict:
    """The expression stage with and without the idle layer, on a synthetic face that is lost
    every other second (so both the live path and the idle path are timed)."""
    from vcam_me.app import build_expression, build_idle
    from vcam_me.config import load_config
    from vcam_me.types import BLENDSHAPE_NAMES, FaceObservation

    cfg = load_config(use_user_config=False)
    landmarks = np.full((478, 3), 0.5, np.float32)
    blendshapes = np.zeros(len(BLENDSHAPE_NAMES), np.float32)
    transform = np.eye(4, dtype=np.float32)
    out = {}
    for label, idle in (("with_idle", build_idle(cfg)), ("without_idle", None)):
        stage = build_expression(cfg, offline=False, micro="none", idle=idle)
        wall = []
        for t in _frames(seconds):
            if int(t) % 33 < 17:  # a 30 fps camera: one observation every other render frame
                face = int(t // 1000) % 2 == 0
                stage.update(FaceObservation(int(t), (1280, 720), landmarks, blendshapes, transform) if face
                             else FaceObservation.empty(int(t), (1280, 720)))
            w0 = time.perf_counter_ns()
            stage.state_at(int(t))
            wall.append(time.perf_counter_ns() - w0)
        out[label] = _stats(wall)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated output per scenario (default 60)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "idle_animator.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from vcam_me.bench import machine_info, write_results

    scenarios = [
        time_animator("face lost", args.seconds, lambda t: False, with_engine=True),
        time_animator("face present", args.seconds, lambda t: True, with_engine=True),
        time_animator("hand-overs every second", args.seconds, lambda t: int(t // 1000) % 2 == 0, with_engine=True),
    ]
    result = {
        "command": "python benchmarks/idle_animator.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "fps": FPS,
        "seconds_per_scenario": args.seconds,
        "scenarios": scenarios,
        "composer_state_at": time_composer(args.seconds),
    }
    write_results(result, args.out, prefix="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
