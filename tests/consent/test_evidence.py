"""Checks on a consent recording: the statement, the voice, the face-match decision, the evidence file."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from vcam_me.consent.evidence import (
    CHALLENGE_WORDS,
    EvidenceError,
    SpeechMeasure,
    check_face_match,
    check_speech,
    consent_statement,
    measure_speech,
    new_challenge,
    parse_challenge,
    read_audio,
    read_checks,
    store_evidence,
    write_checks,
)
from vcam_me.errors import ConsentError

CLIP = Path(__file__).resolve().parents[2] / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"
STATEMENT = ("I, Jane Doe, agree that vcam-me may show an AI-generated avatar of my face in live video calls, "
             "always labelled. My one-time code is RIVER-4821.")


# --------------------------------------------------------------------------- statement


def test_challenges_are_a_listed_word_and_four_digits_and_do_not_repeat():
    codes = [new_challenge() for _ in range(200)]
    for code in codes:
        word, digits = code.split("-")
        assert word in CHALLENGE_WORDS and re.fullmatch(r"\d{4}", digits)
    assert len(set(codes)) > 190  # 640 000 possible codes
    assert len(set(CHALLENGE_WORDS)) == len(CHALLENGE_WORDS) == 64


def test_a_typed_challenge_is_normalised_or_refused():
    assert parse_challenge(" river 4821 ") == "RIVER-4821"
    assert parse_challenge("River-0007") == "RIVER-0007"
    for bad in ("RIVER-482", "PURPLE-4821", "4821", "", "RIVER-48211"):
        with pytest.raises(EvidenceError, match="not a vcam-me challenge code"):
            parse_challenge(bad)


def test_the_statement_names_the_person_the_scope_the_expiry_and_the_code():
    text = consent_statement("  Jane   Doe ", datetime(2027, 2, 21, 12, tzinfo=UTC), "RIVER-4821")
    assert text.startswith("I, Jane Doe, agree")
    assert "live video calls" in text and "labelled as AI-generated" in text
    assert "21 February 2027" in text and text.endswith("RIVER-4821.")
    assert "\n" not in text
    with pytest.raises(EvidenceError):
        consent_statement(" ", datetime(2027, 2, 21, tzinfo=UTC), "RIVER-4821")


# --------------------------------------------------------------------------- voice


def test_real_speech_is_measured_as_voice(spoken_speech):
    samples, rate = spoken_speech(STATEMENT)
    measure = measure_speech(samples, rate)
    assert measure.duration_s == pytest.approx(len(samples) / rate, abs=0.05)
    # espeak-ng leaves short pauses between words: most, not all, of the clip is voice
    assert 0.5 * measure.duration_s < measure.voiced_s < measure.duration_s
    assert -30 < measure.voice_dbfs < -6
    assert check_speech(measure, min_voice_seconds=3, min_voice_dbfs=-40) is measure


def test_silence_noise_and_quiet_speech_are_refused(spoken_speech):
    rate = 16_000
    silent = measure_speech(np.zeros(rate * 6, np.float32), rate)
    assert silent.voiced_s == 0
    with pytest.raises(EvidenceError, match=r"no speech found: 0.0 s of voice in 6.0 s of audio, at least 3 s needed"):
        check_speech(silent, min_voice_seconds=3, min_voice_dbfs=-40)
    # steady background noise has no level above its own floor
    hiss = np.random.default_rng(1).normal(0, 0.01, rate * 6).astype(np.float32)
    assert measure_speech(hiss, rate).voiced_s < 0.5
    # the same speech, 40 dB quieter, is too quiet
    samples, speech_rate = spoken_speech(STATEMENT)
    quiet = measure_speech(samples * 0.01, speech_rate)
    assert quiet.voice_dbfs < -40
    with pytest.raises(EvidenceError, match="too quiet"):
        check_speech(quiet, min_voice_seconds=1, min_voice_dbfs=-40)


def test_a_short_utterance_is_too_little_voice(spoken_speech):
    samples, rate = spoken_speech("Yes.")
    measure = measure_speech(samples, rate)
    assert 0 < measure.voiced_s < 1.5
    with pytest.raises(EvidenceError, match=r"s of voice in .* at least 3 s needed"):
        check_speech(measure, min_voice_seconds=3, min_voice_dbfs=-40)


def test_measure_speech_handles_an_empty_or_tiny_track():
    assert measure_speech(np.zeros(10, np.float32), 16_000) == SpeechMeasure(0.001, 0.0, -120.0, -120.0)
    with pytest.raises(ValueError):
        measure_speech(np.zeros(100, np.float32), 4000)


def test_read_audio_refuses_a_video_without_sound(tmp_path):
    silent_video = tmp_path / "no-sound.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(CLIP), "-t", "1", "-an", "-c:v", "libx264", "-preset",
                    "ultrafast", str(silent_video)], check=True)
    with pytest.raises(EvidenceError, match="no-sound.mp4 has no audio track"):
        read_audio(silent_video)
    with pytest.raises(EvidenceError, match="cannot be read"):
        (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
        read_audio(tmp_path / "junk.mp4")


# --------------------------------------------------------------------------- face


def test_face_match_decides_on_the_median_distance():
    match = check_face_match([0.31, 0.35, 0.9, 0.33], frames_sampled=4, limit=0.6)
    assert match.median_distance == pytest.approx(0.34) and match.limit == 0.6
    with pytest.raises(EvidenceError, match=r"does not match the avatar \(distance 0.71, limit 0.60\)"):
        check_face_match([0.7, 0.71, 0.72, 0.2, 0.75], frames_sampled=5, limit=0.6)


def test_face_match_needs_a_face_in_most_frames_and_only_one():
    with pytest.raises(EvidenceError, match="a face was found in only 1 of 8 sampled frames"):
        check_face_match([0.3], frames_sampled=8, limit=0.6)
    with pytest.raises(EvidenceError, match="more than one face in 5 of 8"):
        check_face_match([0.3, 0.3, 0.3], frames_sampled=8, limit=0.6, several_faces=5)


# --------------------------------------------------------------------------- evidence file


def test_evidence_is_copied_owner_only_under_its_hash_and_the_original_is_untouched(tmp_path):
    recording = tmp_path / "my statement.mp4"
    recording.write_bytes(os.urandom(3_000_000))
    before = recording.read_bytes()
    stored = store_evidence(recording, tmp_path / "consent")
    assert stored.created and stored.sha256 == hashlib.sha256(before).hexdigest()
    assert stored.path == tmp_path / "consent" / "evidence" / f"{stored.sha256}.mp4"
    assert stored.path.read_bytes() == before and recording.read_bytes() == before
    if os.name == "posix":
        assert stat.S_IMODE(stored.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(stored.path.parent.stat().st_mode) == 0o700
    # the same recording again: the stored copy is reused, nothing is rewritten
    mtime = stored.path.stat().st_mtime_ns
    again = store_evidence(recording, tmp_path / "consent")
    assert again.path == stored.path and not again.created and stored.path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in stored.path.parent.iterdir()) == [stored.path.name]  # no partial files left
    with pytest.raises(EvidenceError, match="not found"):
        store_evidence(tmp_path / "missing.mp4", tmp_path / "consent")


def test_measured_figures_are_kept_once_and_never_overwritten(tmp_path):
    path = write_checks(tmp_path, "7KQ4M-2XD3J", {"face_match": {"median_distance": 0.3}})
    assert path.name == "7KQ4M2XD3J.checks.json"
    assert read_checks(tmp_path, "7KQ4M-2XD3J") == {"face_match": {"median_distance": 0.3}}
    with pytest.raises(FileExistsError):
        write_checks(tmp_path, "7KQ4M-2XD3J", {"face_match": {"median_distance": 0.1}})
    assert read_checks(tmp_path, "7KQ4M-2XD3J")["face_match"]["median_distance"] == 0.3
    assert read_checks(tmp_path, "00000-00001") is None


def test_evidence_errors_are_consent_errors():
    assert issubclass(EvidenceError, ConsentError)
