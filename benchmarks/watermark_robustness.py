"""Robustness matrix, false-positive runs and embed cost of the invisible consent mark.

    .venv/bin/python benchmarks/watermark_robustness.py            # everything (~15-25 min, 1 core)
    .venv/bin/python benchmarks/watermark_robustness.py --only h264_1M_720p mirror_h264_1M
    .venv/bin/python benchmarks/watermark_robustness.py --skip-fp   # no false-positive runs
    .venv/bin/python benchmarks/watermark_robustness.py --host liveportrait_src_s32.mp4 --skip-fp \
        --out benchmarks/results/watermark_robustness_host_s32.json     # second host
    nice -n 10 .venv/bin/python benchmarks/watermark_robustness.py --avatar-host --skip-fp \
        --out benchmarks/results/watermark_robustness_avatar.json       # real avatar renders

Host content: real face video from ``../shared/data/driving`` (centre-cropped to 16:9 where
needed and resized to 1280×720, played forwards then backwards to reach the needed length),
marked with :class:`vcam_me.consent.watermark.WatermarkEmbedder`, then put through real
encoders with PyAV (libx264 ``veryfast``/``zerolatency`` with a VBV cap at the target rate,
libvpx/libvpx-vp9 ``realtime``/``cpu-used 8``, SVT-AV1 preset 10) and read back with
:func:`vcam_me.consent.mark_decoder.decode_video`. Writes
``benchmarks/results/watermark_robustness.json`` and prints a table.

``--avatar-host``: the host frames are the avatar renderer's real output instead, made as
``vcam-me render`` makes them, with the builders of :mod:`vcam_me.app`: an avatar (the bundled
sample by default, or a portrait photo made into an avatar and given an attested licence in
a throw-away data folder) driven by a real clip from ``../shared/data/driving``, rendered at
1280×720 and 30 fps, then the visible label and the invisible mark of its consent record
(public mark key, the record's consent ID) stamped by :class:`~vcam_me.consent.disclosure.Disclosure`.
The "unmarked" baseline of each condition is the same render with the label only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vcam_me.consent import mark_decoder as md
from vcam_me.consent import watermark as wm

DRIVING = REPO.parent / "shared" / "data" / "driving"
RESULTS = REPO / "benchmarks" / "results" / "watermark_robustness.json"
TEST_KEY = b"vcam_me benchmark key 0001"
TEST_ID = 0x5A3C_9E11_70B4
FPS = 30
HOST = "liveportrait_src_s18.mp4"


# ------------------------------------------------------------------------------ media helpers


def read_rgb(path: Path, max_frames: int | None = None) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if max_frames and len(out) >= max_frames:
                break
    return out


def to_720p(img: np.ndarray, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """Centre-crop to the target aspect and resize (bicubic)."""
    h, w = img.shape[:2]
    tw, th = size
    if w * th > h * tw:  # too wide
        cw = h * tw // th
        img = img[:, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        ch = w * th // tw
        img = img[(h - ch) // 2:(h - ch) // 2 + ch]
    return cv2.resize(img, size, interpolation=cv2.INTER_CUBIC if img.shape[1] < tw else cv2.INTER_AREA)


def host_frames(name: str, n: int, size=(1280, 720)) -> Iterator[np.ndarray]:
    """``n`` frames of a driving video at ``size``, ping-ponged to length."""
    src = [to_720p(f, size) for f in read_rgb(DRIVING / name, max_frames=300)]
    seq = src + src[-2:0:-1] if len(src) > 2 else src
    for i in range(n):
        yield seq[i % len(seq)].copy()


ENCODERS = {
    "h264": ("libx264", "mp4"),
    "vp8": ("libvpx", "webm"),
    "vp9": ("libvpx-vp9", "webm"),
    "av1": ("libsvtav1", "mp4"),
}


def encode(frames: Iterable[np.ndarray], path: Path, codec: str, kbps: int, fps: int = FPS) -> Path:
    """Encode RGB frames with a real encoder at about ``kbps`` (PyAV)."""
    name, _ = ENCODERS[codec]
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(name, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.bit_rate = kbps * 1000
        s.thread_count = 1
        if codec == "h264":
            s.options = {"preset": "veryfast", "tune": "zerolatency",
                         "x264-params": f"vbv-maxrate={kbps}:vbv-bufsize={kbps}:nal-hrd=cbr"}
        elif codec in ("vp8", "vp9"):
            s.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                         "maxrate": f"{kbps}k", "bufsize": f"{kbps}k"}
        else:
            s.options = {"preset": "10"}
        for i, img in enumerate(_chain(first, frames)):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _chain(first, rest):
    yield first
    yield from rest


def marked(frames: Iterable[np.ndarray], emb: wm.WatermarkEmbedder) -> Iterator[np.ndarray]:
    for f in frames:
        yield emb.embed(f)


# ------------------------------------------------------------------------------ transforms


def crop_centre(aspect: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    def f(img):
        h, w = img.shape[:2]
        cw = h * aspect[0] // aspect[1]
        return np.ascontiguousarray(img[:, (w - cw) // 2:(w - cw) // 2 + cw])
    return f


def mirror(img):
    return np.ascontiguousarray(img[:, ::-1])


def colour_gamma(img):
    """Contrast ×1.2, brightness −15, gamma 0.8, warmer (R ×1.08, B ×0.92)."""
    x = img.astype(np.float32) / 255.0
    x = np.clip((x - 0.5) * 1.2 + 0.5 - 15 / 255, 0, 1) ** 0.8
    x[..., 0] *= 1.08
    x[..., 2] *= 0.92
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def resize_to(size):
    return lambda img: cv2.resize(img, size, interpolation=cv2.INTER_AREA)


_DESKTOP = None


def screen_tile(scale: float, pos=(120, 90)):
    """Paste the call (scaled) into a 1920×1080 desktop-like frame (static UI + side panel)."""
    def f(img):
        global _DESKTOP
        if _DESKTOP is None:
            d = np.full((1080, 1920, 3), 236, np.uint8)
            d[:60] = (40, 44, 52)
            rng = np.random.default_rng(5)
            for _ in range(40):  # text-like lines in a side panel
                y, x, L = int(rng.integers(120, 1000)), int(rng.integers(1300, 1500)), int(rng.integers(80, 400))
                cv2.line(d, (x, y), (min(x + L, 1900), y), (30, 30, 30), 2)
            _DESKTOP = d
        out = _DESKTOP.copy()
        tw, th = round(img.shape[1] * scale), round(img.shape[0] * scale)
        out[pos[1]:pos[1] + th, pos[0]:pos[0] + tw] = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
        return out
    return f


def mapped(frames, fn):
    for f in frames:
        yield fn(f)


def decoded_rgb(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="rgb24")


# ------------------------------------------------------------------------------ conditions

# name: (seconds, target_s, pipeline description, builder(frames_source, tmpdir) -> video path)
def _simple(codec, kbps, pre=None):
    def build(src, tmp):
        frames = mapped(src, pre) if pre else src
        return encode(frames, tmp / f"v.{ENCODERS[codec][1]}", codec, kbps)
    return build


def _screenrec(scale, first_kbps=1000, second_kbps=2000):
    def build(src, tmp):
        gen1 = encode(src, tmp / "gen1.mp4", "h264", first_kbps)
        return encode(mapped(decoded_rgb(gen1), screen_tile(scale)), tmp / "gen2.mp4", "h264", second_kbps)
    return build


CONDITIONS = {
    "h264_1M_720p": (4, 1, "H.264 1 Mbps 1280x720", _simple("h264", 1000)),
    "h264_500k_720p": (6, 5, "H.264 500 kbps 1280x720", _simple("h264", 500)),
    "vp8_1M_720p": (6, 5, "VP8 1 Mbps 1280x720", _simple("vp8", 1000)),
    "vp8_500k_720p": (6, 5, "VP8 500 kbps 1280x720", _simple("vp8", 500)),
    "vp9_500k_720p": (6, 5, "VP9 500 kbps 1280x720", _simple("vp9", 500)),
    "av1_500k_720p": (6, 5, "SVT-AV1 500 kbps 1280x720", _simple("av1", 500)),
    "crop4x3_h264_1M": (6, 5, "centre crop 4:3 (960x720), H.264 1 Mbps", _simple("h264", 1000, crop_centre((4, 3)))),
    "crop1x1_h264_500k": (6, 5, "centre crop 1:1 (720x720), H.264 500 kbps", _simple("h264", 500, crop_centre((1, 1)))),
    "mirror_h264_1M": (6, 5, "mirrored, H.264 1 Mbps", _simple("h264", 1000, mirror)),
    "mirror_h264_500k": (6, 5, "mirrored, H.264 500 kbps", _simple("h264", 500, mirror)),
    "colour_gamma_h264_1M": (6, 5, "contrast 1.2, brightness -15, gamma 0.8, warm tint; H.264 1 Mbps",
                             _simple("h264", 1000, colour_gamma)),
    "colour_gamma_h264_500k": (6, 5, "contrast 1.2, brightness -15, gamma 0.8, warm tint; H.264 500 kbps",
                               _simple("h264", 500, colour_gamma)),
    "screenrec_0.75_1080p": (11, 10, "H.264 1 Mbps 720p, then 0.75x tile in a 1920x1080 desktop, H.264 2 Mbps",
                             _screenrec(0.75)),
    "h264_300k_360p": (11, 10, "downscaled to 640x360, H.264 300 kbps", _simple("h264", 300, resize_to((640, 360)))),
    "screenrec_0.5_1080p": (11, 10, "H.264 1 Mbps 720p, then 0.5x tile in a 1920x1080 desktop, H.264 2 Mbps",
                            _screenrec(0.5)),
}


class DrivingHost:
    """Host frames from a real driving video, marked with the benchmark's test key and ID."""

    def __init__(self, name: str, amplitude: float) -> None:
        self.name = name
        self.key, self.expected_id = TEST_KEY, TEST_ID
        self.embedder = wm.WatermarkEmbedder.create(TEST_ID, TEST_KEY, (1280, 720), amplitude=amplitude)
        self.description = (f"real driving video frames ({name}, ../shared/data/driving), resized to "
                            "1280x720 and ping-ponged; NOT avatar renderer output")

    def marked(self, n: int) -> Iterator[np.ndarray]:
        return marked(host_frames(self.name, n), self.embedder)

    def clean(self, n: int) -> Iterator[np.ndarray]:
        return host_frames(self.name, n)


class AvatarHost:
    """Host frames from the avatar renderer, stamped as ``vcam-me render`` stamps them.

    The render is kept once with the label only (``clean``); ``marked`` adds the same
    Disclosure's mark to a copy of each frame, which is exactly ``Disclosure.stamp`` (label,
    then mark). :meth:`render` checks that equality against a real Disclosure render.
    """

    def __init__(self, name: str, labelled: list[np.ndarray], mark: wm.WatermarkEmbedder, key: bytes,
                 description: str, info: dict) -> None:
        self.name = name
        self._labelled = labelled
        self._mark = mark
        self.key, self.expected_id = key, mark.consent_id
        self.description = description
        self.info = info

    def _frames(self, n: int) -> Iterator[np.ndarray]:
        seq = self._labelled + self._labelled[-2:0:-1] if len(self._labelled) > 2 else self._labelled
        for i in range(n):
            yield seq[i % len(seq)]

    def marked(self, n: int) -> Iterator[np.ndarray]:
        for image in self._frames(n):
            yield self._mark.embed(image.copy())

    def clean(self, n: int) -> Iterator[np.ndarray]:
        for image in self._frames(n):
            yield image.copy()

    @classmethod
    def render(cls, avatar_spec: str | None, driving: Path, seconds: float, size=(1280, 720)) -> AvatarHost:
        from vcam_me import app
        from vcam_me.config import load_config
        from vcam_me.consent.disclosure import PUBLIC_MARK_KEY
        from vcam_me.output import MemorySink
        from vcam_me.pipeline import on_timeline, render_offline, track_all

        cfg = load_config(None)
        with app._open_driving(driving) as source:
            avatar = app.resolve_avatar(avatar_spec, cfg)
            consent = app.require_consent(avatar, "render")
            frames = int(seconds * (source.fps or FPS)) + 2
            with app.build_tracker(cfg, "video") as tracker:
                observations = track_all(on_timeline(itertools.islice(source.iter_timed(), frames)), tracker)
        renderer = app.build_renderer(avatar, size, cfg)
        disclosure = app.build_stamper(cfg, size, consent)

        def rendered(stamper, obs) -> list[np.ndarray]:
            sink = MemorySink()
            expression = app.build_expression(cfg, offline=True, observations=observations)
            render_offline(obs, expression, renderer, stamper, sink, FPS)
            return sink.images

        labelled = rendered(disclosure.label, observations)[: int(seconds * FPS)]
        # The stored frames plus the mark must be what `vcam-me render` writes: check on a prefix.
        reference = rendered(disclosure, observations[:20])
        same = all(np.array_equal(disclosure.mark.embed(labelled[i].copy()), reference[i]) for i in range(len(reference)))
        if not same:
            raise RuntimeError("label-only render + mark differs from the Disclosure render")
        faces = sum(o.has_face for o in observations)
        name = f"avatar:{Path(str(avatar.folder)).name}+{driving.name}"
        description = (f"avatar renderer output: avatar {Path(str(avatar.folder)).name} driven by {driving.name} "
                       f"(../shared/data/driving), {len(labelled)} frames rendered at {size[0]}x{size[1]} {FPS} fps "
                       "with the app's builders and render_offline, label + mark stamped by the app's Disclosure "
                       "(public mark key, the consent record's ID), ping-ponged where a condition is longer")
        info = {"avatar": str(avatar.folder), "driving": driving.name, "rendered_frames": len(labelled),
                "driving_frames_tracked": len(observations), "driving_frames_with_face": faces,
                "consent_code": consent.verdict.code, "consent_kind": consent.verdict.kind,
                "mark_amplitude": disclosure.mark.amplitude, "disclosure_identity_checked_frames": len(reference)}
        return cls(name, labelled, disclosure.mark, PUBLIC_MARK_KEY, description, info)


def run_condition(name: str, host) -> dict:
    seconds, target_s, desc, build = CONDITIONS[name]
    n = seconds * FPS
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        marked_path = build(host.marked(n), tmp)
        t_enc = time.perf_counter() - t0
        kbytes = marked_path.stat().st_size / 1024
        t0 = time.perf_counter()
        res = md.decode_video(marked_path, host.key, max_seconds=seconds, stop_when_found=True)
        t_dec = time.perf_counter() - t0
        late = decode_from(marked_path, LATE_START_FRAMES, seconds, host.key)
        # the same pipeline without the mark: the noise floor of z for this condition
        clean_path = build(host.clean(n), _sub(tmp))
        clean = md.decode_video(clean_path, host.key, max_seconds=seconds, stop_when_found=True)
    expected = host.expected_id
    ok = bool(res.found and res.consent_id == expected and res.first_time_s is not None
              and res.first_time_s < target_s)
    return {
        "condition": name, "pipeline": desc, "target_s": target_s, "host": host.name,
        "pass": ok, "found": res.found, "id_correct": res.consent_id == expected if res.found else None,
        "first_frame": res.first_frame, "first_time_s": res.first_time_s, "z": round(res.z, 2),
        "max_z": round(res.max_z, 2), "scale": res.scale and round(res.scale, 4),
        "mirrored": res.mirrored, "raw_bit_errors_of_128": res.raw_bit_errors,
        "late_start": {"skipped_frames": LATE_START_FRAMES, "found": late.found,
                       "id_correct": late.consent_id == expected if late.found else None,
                       "first_frame": late.first_frame, "z": round(late.z, 2),
                       "pass": bool(late.found and late.consent_id == expected
                                    and late.first_frame is not None and late.first_frame / FPS <= target_s)},
        "unmarked_found": clean.found, "unmarked_max_z": round(clean.max_z, 2),
        "video_kbytes": round(kbytes, 1), "video_seconds": seconds,
        "encode_s": round(t_enc, 1), "decode_s": round(t_dec, 1),
        "history": res.history,
    }


#: The second decode of each condition starts this many frames in (mid-GOP, no key frame).
LATE_START_FRAMES = 60


def decode_from(path: Path, skip: int, seconds: float, key: bytes = TEST_KEY) -> md.DecodeResult:
    times: list[float] = []

    def frames():
        for y, t in itertools.islice(md.iter_video_luma(path), skip, skip + int(seconds * FPS)):
            times.append(t)
            yield y

    return md.decode_frames(frames(), key, timestamps_s=(times[i] for i in itertools.count()))


def _sub(tmp: Path) -> Path:
    p = tmp / "clean"
    p.mkdir(exist_ok=True)
    return p


# ------------------------------------------------------------------------------ false positives


def false_positive_runs(max_seconds: float = 10.0) -> list[dict]:
    """Every driving video as it is, and re-encoded (H.264 500 kbps 720p, VP9 500 kbps at
    360p), decoded with the test key and the full search at every checkpoint."""
    rows = []
    for path in sorted(DRIVING.iterdir()):
        if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".webm"):
            continue
        res = md.decode_video(path, TEST_KEY, max_seconds=None, stop_when_found=False)
        rows.append(_fp_row(path.name, "original", res))
        n = min(int(max_seconds * FPS), 300)
        with tempfile.TemporaryDirectory() as d:
            src = [to_720p(f) for f in read_rgb(path, max_frames=n)]
            v = encode(iter(src), Path(d) / "a.mp4", "h264", 500)
            rows.append(_fp_row(path.name, "H.264 500k 720p", md.decode_video(v, TEST_KEY, None, stop_when_found=False)))
            v = encode((cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in src),
                       Path(d) / "b.webm", "vp9", 500)
            rows.append(_fp_row(path.name, "VP9 500k 360p", md.decode_video(v, TEST_KEY, None, stop_when_found=False)))
        print(f"  fp {path.name:36s} max z " + " / ".join(f"{r['max_z']:.2f}" for r in rows[-3:]), flush=True)
    return rows


def null_z_many_keys(n_keys: int = 40, seconds: float = 10.0) -> dict:
    """The detection statistic under "no mark": for every driving video, the mean residual of
    its first ``seconds`` searched with ``n_keys`` random keys (different pilots)."""
    zs = []
    rng = np.random.default_rng(11)
    keys = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)) for _ in range(n_keys)]
    for path in sorted(DRIVING.iterdir()):
        acc, n = None, 0
        for y, _ in md.iter_video_luma(path, seconds):
            r = md.residual(y.astype(np.float32))
            acc = r if acc is None else acc + r
            n += 1
        mean = acc / n
        for k in keys:
            zs.append(md.locate(mean, md._Carriers(k)).z)
    zs = np.array(zs)
    return {"samples": int(zs.size), "keys": n_keys, "max": round(float(zs.max()), 2),
            "p99": round(float(np.percentile(zs, 99)), 2), "mean": round(float(zs.mean()), 2),
            "std": round(float(zs.std()), 2),
            "exceed_threshold": int((zs >= md.Z_THRESHOLD).sum())}


def _fp_row(name, variant, res):
    return {"video": name, "variant": variant, "frames": res.frames_seen, "found": res.found,
            "max_z": round(res.max_z, 2), "analyses": len(res.history)}


# ------------------------------------------------------------------------------ embed cost / PSNR


def embed_cost(amplitude: float, runs: int = 600) -> dict:
    cv2.setNumThreads(1)
    emb = wm.WatermarkEmbedder.create(TEST_ID, TEST_KEY, (1280, 720), amplitude=amplitude)
    frames = [f for f in host_frames(HOST, 8)]
    times = []
    for i in range(runs):
        img = frames[i % len(frames)].copy()
        t = time.perf_counter_ns()
        emb.embed(img)
        times.append((time.perf_counter_ns() - t) / 1e6)
    times.sort()
    return {"size": "1280x720 RGB uint8", "runs": runs, "threads": 1,
            "median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[int(0.99 * (len(times) - 1))], 3), "max_ms": round(times[-1], 3)}


def y_psnr(a: np.ndarray, b: np.ndarray) -> float:
    ya = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    yb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    mse = float(np.mean((ya - yb) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def psnr_table(amplitude: float) -> list[dict]:
    emb = wm.WatermarkEmbedder.create(TEST_ID, TEST_KEY, (1280, 720), amplitude=amplitude)
    rows = []
    for path in sorted(DRIVING.iterdir()):
        if path.suffix.lower() not in (".mp4", ".mov"):
            continue
        frames = [to_720p(f) for f in read_rgb(path, max_frames=30)[::10]]
        vals = [y_psnr(f, emb.embed(f.copy())) for f in frames]
        rows.append({"video": path.name, "min_y_psnr_db": round(min(vals), 2), "mean_y_psnr_db": round(float(np.mean(vals)), 2)})
    return rows


# ------------------------------------------------------------------------------ main


def avatar_psnr(host: AvatarHost, step: int = 10) -> list[dict]:
    """Y-PSNR of the mark on the avatar renders: label-only frame against label + mark."""
    vals = [y_psnr(img, host._mark.embed(img.copy())) for img in host._labelled[::step]]
    return [{"video": host.name, "frames": len(vals), "min_y_psnr_db": round(min(vals), 2),
             "mean_y_psnr_db": round(float(np.mean(vals)), 2)}]


def make_avatar_host(args) -> AvatarHost:
    """The bundled sample avatar, or ``--avatar PHOTO`` made into an avatar and given an
    attested licence in a throw-away user data folder (the real user's records are untouched)."""
    spec = args.avatar
    seconds = max(CONDITIONS[n][0] for n in (args.only or CONDITIONS))
    driving = DRIVING / args.driving
    if spec and Path(spec).is_file():
        scratch = Path(tempfile.mkdtemp(prefix="vcam-wm-avatar-"))
        for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            os.environ[var] = str(scratch / var.lower())
        from vcam_me.app import main as vcam_main

        folder = scratch / Path(spec).stem
        if vcam_main(["avatar", "create", "--photo", spec, "--out", str(folder)]) != 0:
            raise SystemExit(f"could not make an avatar of {spec}")
        if vcam_main(["consent", "attest", "--avatar", str(folder), "--licence",
                      f"benchmark use of {Path(spec).name} from ../shared/data", "--days", "2"]) != 0:
            raise SystemExit(f"could not attest a licence for {folder}")
        spec = str(folder)
    return AvatarHost.render(spec, driving, seconds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="conditions to run (default: all)")
    ap.add_argument("--skip-fp", action="store_true", help="skip the false-positive runs")
    ap.add_argument("--host", default=HOST, help="driving video used as host content")
    ap.add_argument("--avatar-host", action="store_true",
                    help="host content = real avatar renders with the app's label and mark (see the module doc)")
    ap.add_argument("--avatar", default=None, help="with --avatar-host: an avatar folder or a portrait photo "
                                                   "(default: the bundled sample avatar)")
    ap.add_argument("--driving", default="liveportrait_d6.mp4", help="with --avatar-host: driving clip in ../shared/data/driving")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--amplitude", type=float, default=wm.DEFAULT_AMPLITUDE,
                    help="peak luma codes of the mark (driving-video host only; avatar renders carry the app's mark)")
    args = ap.parse_args(argv)
    if not DRIVING.is_dir():
        print(f"{DRIVING} is absent: nothing to measure", file=sys.stderr)
        return 2
    if args.avatar_host:
        t0 = time.perf_counter()
        host = make_avatar_host(args)
        print(f"avatar host: {host.info} ({time.perf_counter() - t0:.0f} s)", flush=True)
        amplitude = host._mark.amplitude
    else:
        host = DrivingHost(args.host, args.amplitude)
        amplitude = args.amplitude
    result = {
        "what": "invisible consent mark: robustness matrix, false positives, embed cost, PSNR",
        "command": "python benchmarks/watermark_robustness.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "host_content": host.description,
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
                    "av": av.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
        "mark": {"algorithm": wm.ALGORITHM, "cell_px": wm.CELL_PX, "tile_px": wm.TILE_PX,
                 "amplitude": amplitude, "coded_bits": wm.CODED_BITS,
                 "code": "64 info bits (48-bit ID + CRC-16) -> tail-biting conv. code K=7 r=1/2, soft Viterbi"},
        "decoder": {"z_threshold": md.Z_THRESHOLD, "scale_range": md.SCALE_RANGE,
                    "checkpoints": "1,2,3,5,8,12,15,20,25,30 frames then every 15"},
        "embed_cost": embed_cost(amplitude),
        "psnr": avatar_psnr(host) if args.avatar_host else psnr_table(amplitude),
    }
    if args.avatar_host:
        result["avatar_host"] = host.info
    print(f"embed cost: {result['embed_cost']}")
    print("Y-PSNR (min over sampled frames): " + ", ".join(f"{r['video']} {r['min_y_psnr_db']}" for r in result["psnr"]))
    names = args.only or list(CONDITIONS)
    rows = []
    hdr = (f"{'condition':26s} {'target':>6s} {'pass':>5s} {'first_s':>8s} {'frames':>6s} {'z':>6s} "
           f"{'unmk z':>6s} {'scale':>6s} {'mir':>4s} {'err':>4s} {'late':>9s}")
    print(hdr)
    for name in names:
        r = run_condition(name, host)
        rows.append(r)
        print(f"{name:26s} {r['target_s']:>5}s {('PASS' if r['pass'] else 'FAIL'):>5s} "
              f"{(r['first_time_s'] if r['first_time_s'] is not None else float('nan')):8.2f} "
              f"{r['first_frame']!s:>6s} {r['z']:6.2f} {r['unmarked_max_z']:6.2f} "
              f"{(r['scale'] or 0):6.3f} {str(r['mirrored'])[:1]:>4s} {r['raw_bit_errors_of_128']!s:>4s} "
              f"{(('ok@' + str(r['late_start']['first_frame'])) if r['late_start']['pass'] else 'FAIL'):>9s}", flush=True)
    result["conditions"] = rows
    if not args.skip_fp:
        fp = false_positive_runs()
        null = null_z_many_keys()
        print(f"null z over {null['samples']} (video, key) pairs: mean {null['mean']} std {null['std']} "
              f"p99 {null['p99']} max {null['max']}", flush=True)
        worst = max(max(r["max_z"] for r in fp), null["max"])
        result["false_positive"] = {
            "runs": fp, "null_many_keys": null, "any_found": any(r["found"] for r in fp), "max_unmarked_z": worst,
            "threshold": md.Z_THRESHOLD, "margin_z": round(md.Z_THRESHOLD - worst, 2),
            "unmarked_z_in_matrix": max((r["unmarked_max_z"] for r in rows), default=None),
        }
        print(f"false positives: any found = {result['false_positive']['any_found']}, "
              f"max unmarked z = {worst:.2f}, threshold {md.Z_THRESHOLD}, margin {md.Z_THRESHOLD - worst:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
