"""The first run of the desktop app (no Qt here): is this the first run, and what exactly
must this user install for a virtual camera on this system and version.

The first run is the one without a settings file (``config.toml`` in the platform's config
folder). Once the welcome has been shown, :func:`mark_first_run_done` writes that file (the
settings dialog's own format, no values in it), so the welcome does not come back and a
user's later settings go into the same file.

:func:`driver_advice` answers per OS and version with a page the user can open: the OBS
Studio download page (its Virtual Camera is the driver on Windows and macOS), the
UnityCapture project (a small DirectShow driver for Windows), the v4l2loopback project (the
Linux kernel module). The OS comes from :func:`vcam_me.output.virtualcam._system`, the same
seam the driver checks use, so a test can pretend to be each OS.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from vcam_me.config import user_config_path
from vcam_me.output import virtualcam

OBS_DOWNLOAD_URL = "https://obsproject.com/download"
UNITYCAPTURE_URL = "https://github.com/schellingb/UnityCapture"
V4L2LOOPBACK_URL = "https://github.com/umlaeute/v4l2loopback"

#: v4l2loopback's options for browsers and Zoom (exclusive_caps) and its name in their camera lists.
V4L2LOOPBACK_OPTIONS = 'devices=1 exclusive_caps=1 card_label="vcam-me"'


@dataclass(frozen=True)
class DriverAdvice:
    """What to install for a virtual camera, for one OS and version.

    Attributes:
        system: ``platform.system()``'s name ("Linux", "Windows", "Darwin").
        version: the OS version it was written for, in words ("Ubuntu 24.04", "Windows 11", "macOS 14.5").
        what: the driver to install, one short line.
        steps: what to do, in order (shown as a numbered list).
        url: the project's page to open; ``url_label`` names it on the button.
    """

    system: str
    version: str
    what: str
    steps: tuple[str, ...]
    url: str
    url_label: str

    def text(self) -> str:
        """The advice as plain text (for a log line or the command line)."""
        lines = [f"{self.what} ({self.version})"] + [f"{n}. {step}" for n, step in enumerate(self.steps, 1)]
        return "\n".join(lines + [self.url])


def is_first_run(settings_path: Path | None = None) -> bool:
    """True while the user has no settings file yet."""
    return not Path(settings_path or user_config_path()).exists()


def mark_first_run_done(settings_path: Path | None = None) -> Path:
    """Write an empty settings file (atomically, never over an existing one); returns its path."""
    from vcam_me.ui.settings import save_settings

    path = Path(settings_path or user_config_path())
    if not path.exists():
        save_settings({}, path)
    return path


def _os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"')
    except OSError:
        pass
    return values


def _bundled_driver_script() -> Path | None:
    """The Linux bundle's own ``install-v4l2loopback.sh`` (beside the executable), if this is one.

    Not from an AppImage: its files live on a FUSE mount that only the user who started it may
    read (``sudo`` could not run a script there), and the mount goes away when the app ends."""
    if os.environ.get("APPIMAGE"):
        return None
    if getattr(sys, "frozen", False):
        script = Path(sys.executable).resolve().parent / "install-v4l2loopback.sh"
        if script.is_file():
            return script
    return None


def _linux_advice(os_release: dict[str, str]) -> DriverAdvice:
    name = os_release.get("PRETTY_NAME") or os_release.get("NAME") or "Linux"
    family = " ".join([os_release.get("ID", ""), os_release.get("ID_LIKE", "")]).split()
    script = _bundled_driver_script()
    if script is not None:
        install = f"In a terminal: sudo {script} (installs, loads and keeps the driver across reboots)"
    elif {"debian", "ubuntu"} & set(family):
        install = "In a terminal: sudo apt install v4l2loopback-dkms linux-headers-$(uname -r)"
    elif "fedora" in family:
        install = "Enable RPM Fusion (free), then in a terminal: sudo dnf install v4l2loopback"
    elif "arch" in family:
        install = "In a terminal: sudo pacman -S v4l2loopback-dkms linux-headers"
    else:
        install = "Install the v4l2loopback kernel module with your distribution's package manager"
    steps = [install]
    if script is None:
        steps.append(f"Load it: sudo modprobe v4l2loopback {V4L2LOOPBACK_OPTIONS}")
    steps += [
        ("With Secure Boot on, the module must be signed: enrol the DKMS key (sudo mokutil --import "
        "/var/lib/dkms/mok.pub, then reboot) or the kernel refuses it"),
        "Start streaming from the tray and pick \"vcam-me\" as the camera in your call app",
    ]
    return DriverAdvice("Linux", f"{name}, kernel {platform.release()}", "Install the v4l2loopback kernel module",
                        tuple(steps), V4L2LOOPBACK_URL, "Open the v4l2loopback page")


def _windows_advice(release: str) -> DriverAdvice:
    version = f"Windows {release}" if release else "Windows"
    if release in ("10", "11") or not release:
        return DriverAdvice(
            "Windows", version, "Install OBS Studio: its Virtual Camera is the driver vcam-me writes to",
            ("Download and install OBS Studio (the virtual camera comes with it; OBS itself need not run)",
             ("Or, for a small driver without OBS: UnityCapture (github.com/schellingb/UnityCapture, "
             "run its Install.bat as administrator)"),
             "Start streaming from the tray and pick \"OBS Virtual Camera\" (or \"Unity Video Capture\") in your call app"),
            OBS_DOWNLOAD_URL, "Open the OBS Studio download page")
    return DriverAdvice(
        "Windows", version, "Install the UnityCapture driver (current OBS Studio needs Windows 10 or 11)",
        ("Download UnityCapture and run its Install.bat as administrator",
         "Start streaming from the tray and pick \"Unity Video Capture\" in your call app"),
        UNITYCAPTURE_URL, "Open the UnityCapture page")


def _macos_advice(release: str) -> DriverAdvice:
    version = f"macOS {release}" if release else "macOS"
    try:
        major = int(release.split(".")[0])
    except ValueError:
        major = 0
    if major >= 13 or major == 0:
        approve = ("Approve the camera extension when macOS asks (System Settings → General → Login Items & "
                   "Extensions, or Privacy & Security on macOS 13 and 14)")
    else:
        approve = "OBS installs its older virtual-camera plug-in on this macOS; restart your call app afterwards"
    return DriverAdvice(
        "Darwin", version, "Install OBS Studio 30 or newer: its virtual camera is the driver vcam-me writes to",
        ("Download and install OBS Studio",
         "Open OBS once and click \"Start Virtual Camera\" (then quit OBS; vcam-me feeds the camera itself)",
         approve,
         "Start streaming from the tray and pick \"OBS Virtual Camera\" in your call app"),
        OBS_DOWNLOAD_URL, "Open the OBS Studio download page")


def driver_advice(system: str | None = None, version: str | None = None, *,
                  os_release: dict[str, str] | None = None) -> DriverAdvice:
    """What to install for a virtual camera on ``system`` (default: this OS) at ``version``
    (default: this machine's: Windows "10"/"11", macOS "14.5"; Linux reads /etc/os-release)."""
    system = system or virtualcam._system()
    if system == "Windows":
        if version is None:
            version = platform.release() if platform.system() == "Windows" else ""
            if version == "10" and platform.system() == "Windows":
                build = platform.version().split(".")[-1]
                version = "11" if build.isdigit() and int(build) >= 22000 else "10"
        return _windows_advice(version)
    if system == "Darwin":
        if version is None:
            version = platform.mac_ver()[0] if platform.system() == "Darwin" else ""
        return _macos_advice(version)
    if system == "Linux":
        return _linux_advice(os_release if os_release is not None else _os_release())
    return DriverAdvice(system, version or "", f"No virtual camera driver is known for {system}",
                        ("Use the preview window or record to a file instead",), OBS_DOWNLOAD_URL, "Open OBS Studio")
