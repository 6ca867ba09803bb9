"""First run without Qt: when it is the first run, and what to install per OS and version
(pretending to be each OS through virtualcam's ``_system()`` seam)."""

from __future__ import annotations

import pytest

from vcam_me.config import load_config, user_config_path
from vcam_me.ui import first_run
from vcam_me.ui.first_run import (
    OBS_DOWNLOAD_URL,
    UNITYCAPTURE_URL,
    V4L2LOOPBACK_URL,
    driver_advice,
)


def pretend(monkeypatch, system: str) -> None:
    monkeypatch.setattr("vcam_me.output.virtualcam._system", lambda: system)


def test_first_run_until_the_settings_file_exists_and_it_stays_valid(private_user_dirs):
    assert first_run.is_first_run()
    path = first_run.mark_first_run_done()
    assert path == user_config_path() and path.is_file()
    assert not first_run.is_first_run()
    load_config()  # the file written loads like any settings file


def test_marking_the_first_run_never_replaces_a_users_file(private_user_dirs):
    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text("[output]\nfps = 30\n", encoding="utf-8")
    first_run.mark_first_run_done()
    assert path.read_text(encoding="utf-8") == "[output]\nfps = 30\n"


@pytest.mark.parametrize("os_release, command", [
    ({"ID": "ubuntu", "ID_LIKE": "debian", "PRETTY_NAME": "Ubuntu 24.04.1 LTS"}, "sudo apt install v4l2loopback-dkms"),
    ({"ID": "debian", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}, "sudo apt install v4l2loopback-dkms"),
    ({"ID": "fedora", "PRETTY_NAME": "Fedora Linux 41 (Workstation Edition)"}, "sudo dnf install v4l2loopback"),
    ({"ID": "arch", "PRETTY_NAME": "Arch Linux"}, "sudo pacman -S v4l2loopback-dkms"),
    ({"ID": "gentoo", "PRETTY_NAME": "Gentoo Linux"}, "package manager"),
])
def test_linux_names_the_distribution_its_command_and_the_chrome_zoom_options(monkeypatch, os_release, command):
    pretend(monkeypatch, "Linux")
    advice = driver_advice(os_release=os_release)
    assert advice.system == "Linux" and advice.url == V4L2LOOPBACK_URL
    assert advice.version.startswith(os_release["PRETTY_NAME"])
    assert command in advice.steps[0]
    assert any("exclusive_caps=1" in step and 'card_label="vcam-me"' in step for step in advice.steps)
    assert any("Secure Boot" in step for step in advice.steps)


@pytest.mark.parametrize("release", ["10", "11"])
def test_windows_10_and_11_get_obs_with_unitycapture_as_the_small_alternative(monkeypatch, release):
    pretend(monkeypatch, "Windows")
    advice = driver_advice(version=release)
    assert advice.version == f"Windows {release}" and advice.url == OBS_DOWNLOAD_URL
    assert "OBS Studio" in advice.what and any("UnityCapture" in step for step in advice.steps)


def test_older_windows_gets_unitycapture(monkeypatch):
    pretend(monkeypatch, "Windows")
    advice = driver_advice(version="8.1")
    assert advice.url == UNITYCAPTURE_URL and "UnityCapture" in advice.what


@pytest.mark.parametrize("release, words", [("14.5", "Privacy & Security"), ("15.1", "Login Items"),
                                            ("12.7", "older virtual-camera plug-in")])
def test_macos_gets_obs_30_and_the_step_for_its_version(monkeypatch, release, words):
    pretend(monkeypatch, "Darwin")
    advice = driver_advice(version=release)
    assert advice.version == f"macOS {release}" and advice.url == OBS_DOWNLOAD_URL
    assert "OBS Studio 30" in advice.what and "Start Virtual Camera" in " ".join(advice.steps)
    assert words in " ".join(advice.steps)


def test_an_unknown_system_is_told_so(monkeypatch):
    pretend(monkeypatch, "Haiku")
    advice = driver_advice()
    assert "Haiku" in advice.what and advice.text().startswith("No virtual camera driver is known for Haiku")


def test_the_advice_follows_this_machine_when_nothing_is_given():
    advice = driver_advice()
    assert advice.steps and advice.url.startswith("https://")


def test_the_installed_linux_bundle_points_to_its_own_driver_script(monkeypatch, tmp_path):
    import sys

    pretend(monkeypatch, "Linux")
    (tmp_path / "vcam-me").write_bytes(b"")
    script = tmp_path / "install-v4l2loopback.sh"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "vcam-me"))
    advice = driver_advice(os_release={"ID": "ubuntu", "PRETTY_NAME": "Ubuntu 24.04.1 LTS"})
    assert advice.steps[0].startswith(f"In a terminal: sudo {script}")
    assert not any("modprobe" in step for step in advice.steps)  # the script loads it with the right options


def test_an_appimage_gives_the_distribution_commands_not_a_script_on_its_mount(monkeypatch, tmp_path):
    import sys

    pretend(monkeypatch, "Linux")
    (tmp_path / "vcam-me").write_bytes(b"")
    (tmp_path / "install-v4l2loopback.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "vcam-me"))
    monkeypatch.setenv("APPIMAGE", "/home/user/vcam-me-0.1.0-x86_64.AppImage")
    advice = driver_advice(os_release={"ID": "ubuntu", "PRETTY_NAME": "Ubuntu 24.04.1 LTS"})
    assert advice.steps[0] == "In a terminal: sudo apt install v4l2loopback-dkms linux-headers-$(uname -r)"
    assert any("modprobe v4l2loopback" in step and "exclusive_caps=1" in step for step in advice.steps)
