"""The set-up wizard driven like a user would, with a recorded video standing in for the
camera: the quality meter, the prompted session (and its re-asks on a still face), the real
fine-tuning with few steps, cancel, the side-by-side check, save and discard; the camera page
lists the cameras found (a fake lister) without waiting for them."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from vcam_me.capture import CameraInfo
from vcam_me.config import load_config
from vcam_me.ui import setup_flow as flow
from vcam_me.ui.qt_wizard import SetupWizard

from .test_qt_tray import Watchdog

SHORT_PROMPTS = (
    flow.Prompt("neutral", "Relax", seconds=1.0),
    flow.Prompt("smile", "Smile", ("AU12_L", "AU12_R"), seconds=1.0),
    flow.Prompt("jaw_open", "Open your mouth", ("AU26", "AU27"), seconds=1.0),
    flow.Prompt("brows_up", "Raise your eyebrows", ("AU1", "AU2_L", "AU2_R"), seconds=1.0),
)


def _cfg(clip, pace="fast"):
    cfg = load_config(use_user_config=False)
    return dataclasses.replace(
        cfg, capture=dataclasses.replace(cfg.capture, source=str(clip), loop=True, pace=pace, fps=24),
        avatar=dataclasses.replace(cfg.avatar, appearance="auto"))


def _wizard(qtbot, cfg, root, **kwargs):
    wizard = SetupWizard(cfg, sources=[("Recorded video", cfg.capture.source)], countdown_s=0.0,
                         avatars_root=root / "avatars", work_dir=root / "setup", **kwargs)
    qtbot.addWidget(wizard)
    wizard.show()
    return wizard


def _still_video(clip, out, write_video):
    import av

    with av.open(str(clip)) as src:
        first = next(src.decode(video=0)).to_ndarray(format="rgb24")
    return write_video([first] * 48, out)


def test_a_still_face_is_asked_again_and_closing_removes_the_capture(qtbot, bundled_clip_cut, private_user_dirs,
                                                                    write_video):
    still = _still_video(bundled_clip_cut(240, 24), private_user_dirs / "still.mp4", write_video)
    wizard = _wizard(qtbot, _cfg(still), private_user_dirs, prompts=SHORT_PROMPTS[:2])
    camera_page = wizard.pages["camera"]
    qtbot.waitUntil(camera_page.isComplete, timeout=20_000)
    bars = {name: bar.value() for name, (_, bar) in camera_page.meters.items()}
    assert all(v > 0 for v in bars.values()), bars  # a real face: the meter shows it
    wizard.next()
    session_page = wizard.pages["session"]
    qtbot.waitUntil(session_page.isComplete, timeout=30_000)
    results = session_page.session.results
    smiles = [r for r in results if r.prompt.key == "smile"]
    assert results[0].moved and [r.attempt for r in smiles] == [0, 1, 2] and not any(r.moved for r in smiles)
    assert "smile" in session_page.again.text().lower()
    capture = wizard.capture_path
    assert capture.is_file() and capture.stat().st_size > 0
    wizard.reject()
    assert not capture.exists(), "closing before Save removes the wizard's capture"
    assert (private_user_dirs / "still.mp4").is_file(), "and nothing else"


@pytest.mark.slow
def test_from_camera_to_a_saved_avatar_without_blocking_the_gui(qtbot, bundled_clip_cut, private_user_dirs):
    from vcam_me.avatar import Avatar

    pytest.importorskip("torch")
    wizard = _wizard(qtbot, _cfg(bundled_clip_cut(240, 24)), private_user_dirs, prompts=SHORT_PROMPTS, steps=3)
    qtbot.waitUntil(wizard.pages["camera"].isComplete, timeout=20_000)
    wizard.next()
    qtbot.waitUntil(wizard.pages["session"].isComplete, timeout=60_000)
    assert wizard.pages["session"].session.results[0].moved
    watchdog = Watchdog()
    watchdog.start()
    wizard.next()  # training starts
    training = wizard.pages["training"]
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: training.job.state().finished, timeout=120_000)
    worst_ms = watchdog.stop()
    state = training.job.state()
    assert state.error is None and state.result is not None, state.error
    print(f"training {time.monotonic() - t0:.1f} s; GUI thread: longest gap between 10 ms ticks {worst_ms:.1f} ms")
    assert worst_ms < 50, f"the GUI thread stalled for {worst_ms:.1f} ms during training"
    qtbot.waitUntil(training.isComplete, timeout=5_000)
    assert training.bar.value() == training.bar.maximum(), (state, training.bar.value(), training.bar.maximum())

    wizard.next()
    check = wizard.pages["check"]
    qtbot.waitUntil(check.isComplete, timeout=60_000)
    assert check.pairs, check.status.text()
    you, avatar = check.pairs[0]
    assert you.shape == avatar.shape and avatar.dtype == np.uint8 and avatar.std() > 5
    wizard.next()  # Save
    folder = wizard.avatar_folder
    assert wizard.currentPage() is wizard.pages["consent"]
    assert str(folder) in wizard.pages["consent"].text.text()
    wizard.accept()
    assert Avatar.load(folder).network_files() is not None, "the saved avatar has its own network"
    assert not wizard.capture_path.exists(), "the raw capture is not kept"


@pytest.mark.slow
def test_cancel_during_training_keeps_the_gui_alive_and_leaves_no_avatar(qtbot, bundled_clip_cut, private_user_dirs):
    pytest.importorskip("torch")
    clip = bundled_clip_cut(240, 24)
    wizard = SetupWizard(_cfg(clip), steps=400, avatars_root=private_user_dirs / "avatars",
                         work_dir=private_user_dirs / "setup")
    qtbot.addWidget(wizard)
    wizard.capture_path = clip  # a capture recorded earlier: start at the training page
    wizard.setStartId(wizard.pageIds()[2])
    wizard.show()
    training = wizard.pages["training"]
    qtbot.waitUntil(lambda: training.job is not None and training.job.state().stage == "training"
                    and training.job.state().done >= 1, timeout=90_000)
    qtbot.mouseClick(training.cancel_button, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: training.job.state().finished, timeout=30_000)
    assert training.job.state().cancelled
    qtbot.waitUntil(training.resume_button.isVisible, timeout=2_000)
    assert not training.isComplete() and not wizard.avatar_folder.exists()
    wizard.reject()
    assert clip.is_file(), "a capture the wizard did not make is never removed"


def test_the_consent_page_records_on_the_chosen_camera_or_says_why_not(qtbot, bundled_clip_cut, private_user_dirs):
    import cv2

    from vcam_me.app import BUNDLED_AVATAR, main

    photo = private_user_dirs / "portrait.png"
    cv2.imwrite(str(photo), cv2.imread(str(BUNDLED_AVATAR / "reference.png")))
    folder = private_user_dirs / "avatars" / "me"
    assert main(["avatar", "create", "--photo", str(photo), "--out", str(folder)]) == 0
    wizard = SetupWizard(_cfg(bundled_clip_cut(240, 24), pace="realtime"), avatars_root=private_user_dirs / "avatars",
                         work_dir=private_user_dirs / "setup")
    qtbot.addWidget(wizard)
    wizard.avatar_folder, wizard.saved = folder, True
    wizard.setStartId(wizard.pageIds()[4])
    wizard.show()
    page = wizard.pages["consent"]
    assert str(folder) in page.text.text()
    page.record()
    assert page.outcome.text() == "Type your name first."
    page.name.setText("Test Person")
    page.record()
    qtbot.waitUntil(lambda: page.outcome.text().startswith(("Not recorded:", "Consent recorded")), timeout=60_000)
    print(page.outcome.text())
    assert "\n" not in page.outcome.text() and page.record_button.isEnabled() != ("recorded (" in page.outcome.text())
    wizard.accept()
    assert folder.is_dir(), "a saved avatar stays"


def _spoken_microphone(speech, sample_rate):
    """``open_microphone`` for the wizard: the real :class:`Microphone` class, fed the blocks of
    espeak-ng speech at their real pace on a thread of its own (as PortAudio's callback would),
    the sentence said over and over until the recording closes the microphone."""
    from vcam_me.capture.microphone import Microphone

    class Spoken(Microphone):
        def __init__(self, on_block):
            super().__init__(None, sample_rate, on_block=on_block)
            self.stopped = threading.Event()
            self.thread = threading.Thread(target=self._play, name="spoken-microphone", daemon=True)
            self.thread.start()

        def _play(self):
            block = sample_rate // 50
            start, fed = time.monotonic(), 0
            while not self.stopped.is_set():
                for i in range(0, speech.size, block):
                    if self.stopped.is_set():
                        return
                    self.feed(speech[i:i + block])
                    fed += min(block, speech.size - i)
                    time.sleep(max(0.0, start + fed / sample_rate - time.monotonic()))

        def close(self):
            self.stopped.set()
            self.thread.join(5.0)
            super().close()

    return Spoken


@pytest.mark.slow
def test_a_consent_statement_recorded_in_the_wizard_signs_a_record_for_the_avatar(
        qtbot, private_user_dirs, spoken_speech, capsys):
    """The camera: the bundled clip paced in real time through the capture stage's source; the
    microphone: espeak-ng speech through the Microphone class; the avatar: made from a frame of
    that same clip, so the face in the recording is the avatar's."""
    import av
    import cv2
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QWizard

    from vcam_me.app import BUNDLED_DRIVING, main, require_consent
    from vcam_me.avatar import Avatar

    with av.open(str(BUNDLED_DRIVING)) as src:
        first = next(src.decode(video=0)).to_ndarray(format="bgr24")
    photo = private_user_dirs / "frame.png"
    cv2.imwrite(str(photo), first)
    folder = private_user_dirs / "avatars" / "me"
    assert main(["avatar", "create", "--photo", str(photo), "--out", str(folder)]) == 0
    speech, rate = spoken_speech("I agree that this avatar of my face may be used in my video calls.")
    cfg = _cfg(BUNDLED_DRIVING, pace="realtime")
    cfg = dataclasses.replace(cfg, consent=dataclasses.replace(cfg.consent, record_seconds=6.0))
    wizard = SetupWizard(cfg, sources=[("Recorded video", str(BUNDLED_DRIVING))],
                         open_microphone=_spoken_microphone(speech, rate),
                         avatars_root=private_user_dirs / "avatars", work_dir=private_user_dirs / "setup")
    qtbot.addWidget(wizard)
    wizard.avatar_folder, wizard.saved = folder, True  # as after the check page's "Save"
    wizard.setStartId(wizard.pageIds()[4])
    wizard.show()
    page = wizard.pages["consent"]
    page.name.setText("Wolfgang Langer")
    page.record()
    qtbot.waitUntil(lambda: page.outcome.text().startswith(("Not recorded:", "Consent recorded")), timeout=90_000)
    assert page.outcome.text().startswith("Consent recorded ("), page.outcome.text()
    assert page.statement.text().startswith("Read aloud:") and not page.record_button.isEnabled()

    record = Avatar.load(folder)
    consent = require_consent(record, "live_call")
    assert consent.verdict.kind == "recorded"
    code = page.outcome.text().split("(", 1)[1].split(")", 1)[0]
    capsys.readouterr()
    assert main(["consent", "show", code]) == 0
    shown = capsys.readouterr().out
    assert "kind:           recorded" in shown and "Wolfgang Langer" in shown and "face match:     median distance" in shown

    finish = wizard.button(QWizard.WizardButton.FinishButton)
    assert finish.isVisible() and finish.isEnabled()
    with qtbot.waitSignal(wizard.finished, timeout=5000) as finished:
        qtbot.mouseClick(finish, Qt.MouseButton.LeftButton)
    assert finished.args == [QWizard.DialogCode.Accepted.value] and not wizard.isVisible()
    assert (folder / "consent.json").is_file(), "the saved avatar keeps its consent"


# -- the camera list ----------------------------------------------------------------------------

class _NoFaceTracker:
    """The page's tracker seam: these tests are about which source is opened, not faces."""

    def track(self, frame):
        from vcam_me.types import FaceObservation

        return FaceObservation.empty(frame.timestamp_ms, frame.image.shape[1::-1])

    def close(self):
        pass


def _picture(folder):
    import cv2

    path = folder / "picture.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 120, np.uint8))
    return path


def _camera_wizard(qtbot, root, cameras, camera_index=0, **kwargs):
    """A wizard whose "cameras" (any spec) show a still picture; ``opened`` lists the specs."""
    from vcam_me.capture import open_source

    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(cfg, capture=dataclasses.replace(cfg.capture, camera_index=camera_index, fps=24))
    picture, opened = _picture(root), []

    def open_spec(spec):
        opened.append(spec)
        return open_source(dataclasses.replace(cfg.capture, source=str(picture)))

    lister = cameras if callable(cameras) else lambda: cameras
    wizard = SetupWizard(cfg, list_cameras=lister, open_source=open_spec, make_tracker=_NoFaceTracker,
                         countdown_s=0.0, avatars_root=root / "avatars", work_dir=root / "setup", **kwargs)
    qtbot.addWidget(wizard)
    wizard.show()
    return wizard, opened


def _items(combo):
    return [combo.itemText(i) for i in range(combo.count())]


def test_the_camera_page_lists_the_cameras_and_previews_the_chosen_one(qtbot, private_user_dirs):
    cameras = [CameraInfo(0, "Integrated Camera"), CameraInfo(2, "USB Camera"), CameraInfo(4, "vcam-me", True)]
    wizard, opened = _camera_wizard(qtbot, private_user_dirs, cameras, camera_index=2)
    page = wizard.pages["camera"]
    combo = page.choice.combo
    qtbot.waitUntil(lambda: combo.count() == 2, timeout=5_000)
    assert _items(combo) == ["Integrated Camera (camera 0)", "USB Camera (camera 2)"]  # never our own output
    assert combo.currentText() == "USB Camera (camera 2)"
    qtbot.waitUntil(lambda: opened == ["camera:2"] and not page.view.pixmap().isNull(), timeout=10_000)
    combo.setCurrentIndex(0)  # the user picks the other camera: the preview follows
    qtbot.waitUntil(lambda: opened == ["camera:2", "camera:0"], timeout=5_000)
    assert wizard.camera.snapshot().error is None


def test_the_wizard_shows_at_once_and_no_camera_is_said_plainly(qtbot, private_user_dirs):
    release = threading.Event()
    video = _picture(private_user_dirs)

    def slow_lister():
        release.wait(10)
        return []

    wizard, opened = _camera_wizard(qtbot, private_user_dirs, slow_lister, sources=[("Recorded video", str(video))])
    page = wizard.pages["camera"]
    # the search waits for us, yet the page is up with the video previewing
    assert page.choice.searching() and page.choice.status.text() == "Looking for cameras…"
    qtbot.waitUntil(lambda: opened == [str(video)] and not page.view.pixmap().isNull(), timeout=10_000)
    release.set()
    qtbot.waitUntil(lambda: not page.choice.searching() and page.choice.cameras is not None, timeout=5_000)
    assert page.choice.status.text() == "No camera found: plug one in, or drive the avatar from a video file"
    assert _items(page.choice.combo) == ["Recorded video"] and opened == [str(video)]  # the preview went on


def test_a_camera_in_the_list_opens_that_camera_index(qtbot, private_user_dirs):
    from vcam_me.errors import CaptureError

    wizard = SetupWizard(load_config(use_user_config=False), list_cameras=list, countdown_s=0.0,
                         avatars_root=private_user_dirs / "avatars", work_dir=private_user_dirs / "setup")
    qtbot.addWidget(wizard)
    with pytest.raises(CaptureError, match=r"^no camera at index 61 "):
        wizard._default_source("camera:61")  # the real capture stage: no machine has camera 61
