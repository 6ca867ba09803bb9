"""Command-line grammar of ``vcam-me``. Parsing only: :mod:`vcam_me.app` does the work."""

from __future__ import annotations

import argparse
import re

from vcam_me import __version__

#: Fine-tuning steps of ``vcam-me setup``, and of the evaluation's personalised renderer, so that
#: the evaluation scores the avatar a set-up makes (``training.personalise.DEFAULT_STEPS``; the
#: parser does not import the training code, a test keeps the two equal).
SETUP_STEPS = 500


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX×](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (160 <= w <= 3840 and 120 <= h <= 2160 and w % 2 == 0 and h % 2 == 0):
        raise argparse.ArgumentTypeError(f"size {w}x{h}: width 160..3840 and height 120..2160, both even")
    return w, h


def _fps(text: str) -> int:
    if text not in ("30", "60"):
        raise argparse.ArgumentTypeError(f"fps must be 60 or 30, got {text!r}")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"vcam-me: error: {message} (see: {self.prog} --help)\n")


def _micro_options(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--micro", metavar="auto|none|FILE.json",
                        help="micro-expressions: auto (at random, [micro] rate_per_min), none, or a scripted sequence "
                        "(JSON list of {t_ms, type, side?, peak?, hold_ms?}; default: [micro] mode in the config, none)")
    where = "OUT.events.json beside the video" if command == "render" else "beside --record's file, else none"
    parser.add_argument("--events-out", metavar="EVENTS.json",
                        help=f"write the injected events (type, AUs, side, peak, start/apex/end ms on the output's "
                        f"timeline) here (default: {where})")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="vcam-me",
        description="Your consenting avatar instead of the raw webcam, in any video call. "
        "With no command: on a desktop, the tray app (needs the [ui] extra); elsewhere this help.",
    )
    p.add_argument("--version", action="version", version=f"vcam-me {__version__}")
    p.add_argument("--config", metavar="FILE", help="extra TOML config on top of the defaults and your config.toml")
    p.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    demo = sub.add_parser("demo", help="render the bundled real face clip onto the bundled avatar")
    demo.add_argument("--out", metavar="OUT.mp4", help="where to write the video (default: a new file in the current folder)")

    run = sub.add_parser("run", help="live: camera or video in; virtual camera, preview or file out")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="N", help="webcam index (default from config: 0)")
    src.add_argument("--video", metavar="FILE", help="drive from a video file instead of a camera")
    src.add_argument("--image", metavar="FILE", help="drive from a still image")
    run.add_argument("--avatar", metavar="A", help="avatar folder or portrait photo (default: the bundled sample)")
    run.add_argument("--virtualcam", action="store_true", help="send to the virtual camera (default when no other output is named)")
    run.add_argument("--preview", action="store_true", help="show a preview window")
    run.add_argument("--record", metavar="OUT.mp4", help="also record to an MP4 file")
    run.add_argument("--fps", type=_fps, help="output frame rate: 60 or 30")
    run.add_argument("--size", type=_size, metavar="WxH", help="output size, e.g. 1280x720")
    run.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    run.add_argument("--fast", action="store_true", help="video input: as fast as possible instead of real time")
    run.add_argument("--loop", action="store_true", help="video input: start again at the end")
    run.add_argument("--force", action="store_true", help="overwrite --record's file (and the event log) if it exists")
    run.add_argument("--no-hotkeys", action="store_true", help="do not listen for global hotkeys ([hotkeys] in the config)")
    _micro_options(run, "run")

    render = sub.add_parser("render", help="offline: drive an avatar with a video and write an MP4")
    render.add_argument("--avatar", required=True, metavar="A", help="avatar folder or portrait photo")
    render.add_argument("--driving", required=True, metavar="VIDEO", help="video of a face to follow")
    render.add_argument("--out", required=True, metavar="OUT.mp4", help="output video")
    render.add_argument("--fps", type=_fps, default=60, help="output frame rate: 60 (default) or 30")
    render.add_argument("--size", type=_size, metavar="WxH", help="output size (default from config: 1280x720)")
    render.add_argument("--force", action="store_true", help="overwrite OUT (and the event log) if it exists")
    _micro_options(render, "render")

    avatar = sub.add_parser("avatar", help="make, list, export and import avatars")
    avatar_sub = avatar.add_subparsers(dest="avatar_command", parser_class=_Parser)
    create = avatar_sub.add_parser("create", help="make an avatar from one portrait photo")
    create.add_argument("--photo", required=True, metavar="FILE", help="a portrait with exactly one clearly visible face")
    create.add_argument("--name", help="avatar name (default: the photo's file name)")
    create.add_argument("--out", metavar="DIR", help="avatar folder to create (default: in your vcam-me data folder)")
    avatar_sub.add_parser("list", help="list your avatars")
    export = avatar_sub.add_parser("export", help="write an avatar as one .zip file (with its consent record)")
    export.add_argument("name", metavar="NAME", help="one of your avatars (see: vcam-me avatar list), or an avatar folder")
    export.add_argument("out", metavar="OUT.zip", help="the archive to write (never overwritten)")
    imp = avatar_sub.add_parser("import", help="add an avatar from a .zip made by 'vcam-me avatar export'")
    imp.add_argument("archive", metavar="ARCHIVE.zip")
    imp.add_argument("--name", help="name of the new avatar (default: the archive's file name)")

    consent = sub.add_parser("consent", help="consent records: record consent, attest a licence, revoke, list, show")
    consent_sub = consent.add_subparsers(dest="consent_command", parser_class=_Parser)
    attest = consent_sub.add_parser("attest", help="sign that you hold the rights to an avatar's image for this use")
    attest.add_argument("--avatar", required=True, metavar="A", help="avatar folder or portrait photo")
    attest.add_argument("--licence", required=True, metavar="TEXT", help="the licence or right you rely on, e.g. 'public-domain painting' or 'my own face'")
    attest.add_argument("--name", help="who or what the avatar shows (default: the avatar's name)")
    attest.add_argument("--days", type=int, default=365, help="days the record stays valid (default 365)")
    record = consent_sub.add_parser(
        "record", help="recorded consent: the person shown reads a statement on camera and microphone",
        description="The person the avatar shows reads a statement naming them, the scope (live video calls and "
        "renders with vcam-me, always labelled) and the expiry, plus a one-time challenge code. The face in the "
        "recording must match the avatar's face and the audio must hold enough speech; the recording is kept, "
        "readable only by you, in your vcam-me data folder, and its SHA-256 goes into the signed record. "
        "Live (the default): records --seconds from the camera and the default microphone. Headless, in two "
        "steps: --statement-only prints the statement with a fresh challenge code; have it read aloud on camera; "
        "then --recording FILE --challenge CODE checks that file and signs the record.",
    )
    record.add_argument("--avatar", required=True, metavar="A", help="avatar folder or portrait photo")
    record.add_argument("--name", required=True, help="full name of the person who gives consent (it is in the statement)")
    record.add_argument("--days", type=int, default=90, help="days the consent stays valid (default 90)")
    record_how = record.add_mutually_exclusive_group()
    record_how.add_argument("--recording", metavar="FILE", help="an existing video with sound of the statement being read (headless)")
    record_how.add_argument("--statement-only", action="store_true", help="print the statement with a fresh challenge code and stop")
    record_how.add_argument("--seconds", type=_positive, help="length of the live recording (default from config: 15)")
    record.add_argument("--challenge", metavar="CODE", help="with --recording: the challenge code read aloud in it, e.g. RIVER-4821")
    revoke = consent_sub.add_parser("revoke", help="revoke a consent record: rendering with it stops at once")
    revoke.add_argument("id", metavar="ID", help="consent ID, e.g. 7KQ4M-2XD3J")
    revoke.add_argument("--reason", required=True, help="why (kept in the revocation list)")
    consent_sub.add_parser("list", help="every consent record on this machine and its status")
    show = consent_sub.add_parser("show", help="one record in full, and whether it is valid")
    show.add_argument("id", metavar="ID")

    verify = sub.add_parser("verify", help="read the consent mark out of a recording and check its record")
    verify.add_argument("file", metavar="FILE", help="a video: a screen or cloud recording of a call, a vcam-me render, …")
    verify.add_argument("--seconds", type=_positive, default=20.0, help="read at most this much of the video (default 20)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")

    setup = sub.add_parser("setup", help="personalise: make your own avatar from a recorded setup session")
    setup.add_argument("--from-video", required=True, metavar="CAPTURE.mp4",
                       help="a 60-90 s recording of you alone: neutral, then brows up, frown, wide eyes, squint, "
                            "nose wrinkle, smile, jaw open, blinks, small head turns")
    setup.add_argument("--out", metavar="FOLDER", help="the new avatar folder (default: a new folder among your avatars)")
    setup.add_argument("--steps", type=int, default=SETUP_STEPS, help=f"fine-tuning steps (default {SETUP_STEPS}: about 3 minutes on 2 CPU cores)")
    setup.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                       help="where to fine-tune (default auto: the GPU when PyTorch sees one)")
    sub.add_parser("doctor", help="check this machine: camera, virtual camera driver, models, GPU")
    entry = sub.add_parser("desktop-entry", help="AppImage: add vcam-me to your applications menu (or --remove it)")
    entry.add_argument("--remove", action="store_true", help="take the menu entry and its icon out again")

    bench = sub.add_parser("bench", help="measure speed: fps, latency, CPU, per-stage cost")
    bench.add_argument("--driving", metavar="VIDEO", help="driving video (default: the bundled clip)")
    bench.add_argument("--avatar", metavar="A", help="avatar (default: the bundled sample)")
    bench.add_argument("--seconds", type=_positive, default=60.0, help="how long to stream (default 60)")
    bench.add_argument("--fps", type=_fps, default=60, help="output frame rate (default 60)")
    bench.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="output size (default 1280x720)")
    bench.add_argument("--out", metavar="FILE.json", help="write the results as JSON here too")
    bench.add_argument("--soak", action="store_true",
                       help="a long call watched for leaks: memory, threads, open files and latency every --window "
                            "seconds, judged after --warmup (use with e.g. --seconds 1800)")
    bench.add_argument("--window", type=_positive, default=10.0, metavar="S", help="soak: seconds per row (default 10)")
    bench.add_argument("--warmup", type=_positive, default=None, metavar="S",
                       help="soak: seconds before leaks are judged (default: a quarter of the run, at most 120)")

    ev = sub.add_parser("eval", help="closed-loop checks: expression fidelity (AED/APD, per-AU r) or micro-expressions")
    ev.add_argument("what", nargs="?", choices=("fidelity", "micro", "renderers", "identity"), default="fidelity",
                    help="fidelity (default): AED/APD ratios and per-AU Pearson r; micro: inject every "
                         "micro-expression type, re-track the render, spot and score the events; renderers: "
                         "warp only vs generic prior vs personalised network, self-reenacted on held-back frames "
                         "(PSNR/SSIM of face, mouth, eyes; AED/APD; identity distance); identity: avatars driven by "
                         "other people keep the avatar's identity (dlib descriptor distances)")
    ev.add_argument("--avatar", metavar="A", help="avatar (default: the bundled sample)")
    ev.add_argument("--driving", metavar="VIDEO", nargs="+", help="driving videos (default: the real clips in ../shared/data/driving)")
    ev.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="render size (default 1280x720)")
    ev.add_argument("--basis", metavar="FILE.npz", help="fidelity, micro: draw with this AU basis (a recalibrated copy) "
                                                      "instead of the shipped one")
    ev.add_argument("--out", metavar="FILE.json", help="write the results as JSON here too")
    ev.add_argument("--still-seconds", type=float, default=30.0, metavar="S",
                    help="micro: length of the still neutral driver (0: none; default 30)")
    ev.add_argument("--seed", type=int, default=0, help="micro: seed of the injection schedule (default 0)")
    ev.add_argument("--peaks", type=float, nargs="*", default=[0.2, 0.4, 0.6, 0.8, 1.0], metavar="P",
                    help="micro: peak intensities (fractions of the calibrated range) of the sensitivity sweep "
                         "on the still driver (none: skip it)")
    ev.add_argument("--split", type=float, default=0.6, metavar="F",
                    help="renderers: personalise on the first F of each clip, score the rest (default 0.6)")
    ev.add_argument("--steps", type=int, default=SETUP_STEPS,
                    help=f"renderers: fine-tuning steps per clip (default {SETUP_STEPS}, as vcam-me setup)")
    ev.add_argument("--sheet", metavar="FILE.jpg", help="renderers: write a before/after picture sheet here")
    ev.add_argument("--frames", type=int, default=150, help="identity: driving frames per clip (default 150)")
    return p
