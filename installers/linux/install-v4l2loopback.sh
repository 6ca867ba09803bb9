#!/usr/bin/env bash
# Installs and loads v4l2loopback, the Linux virtual-camera driver vcam-me writes to, with the
# options browsers and Zoom need, and keeps them across reboots. Run as root (sudo).
#
#   exclusive_caps=1     the device announces only CAPTURE once a writer is attached; Chrome,
#                        Chromium (Meet, Teams on the web) and Zoom list no device without it
#   card_label="vcam-me" the name the call app shows in its camera list
#   devices=1            one device is enough; vcam-me finds it by its label
#
# Options: --no-install  only load and persist (the module is already installed)
#          --no-persist  load now but do not write /etc/modules-load.d and /etc/modprobe.d
# Driver project: https://github.com/umlaeute/v4l2loopback
set -euo pipefail
OPTIONS='devices=1 exclusive_caps=1 card_label="vcam-me"'
install_pkg=1; persist=1
for arg in "$@"; do
  case "$arg" in
    --no-install) install_pkg=0 ;;
    --no-persist) persist=0 ;;
    *) echo "usage: $0 [--no-install] [--no-persist]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install-v4l2loopback: needs root: sudo $0 $*" >&2
  exit 2
fi

secure_boot_help() {
  cat >&2 <<'EOF'
install-v4l2loopback: the kernel refused the module. The usual cause is Secure Boot: DKMS built
v4l2loopback but it is not signed with a key your firmware trusts ("Key was rejected by service",
"Required key not available", or "module verification failed" in `dmesg`). Either:
  - enrol the DKMS signing key: Debian/Ubuntu: `sudo mokutil --import /var/lib/dkms/mok.pub`
    (Fedora with akmods: `sudo mokutil --import /etc/pki/akmods/certs/public_key.der`), choose a
    one-time password, reboot, pick "Enroll MOK" in the blue MOK manager, enter the password,
    then run this script again; or
  - turn Secure Boot off in the firmware settings.
Check with `mokutil --sb-state`. If the build itself failed, install the headers of the running
kernel (Debian/Ubuntu: linux-headers-$(uname -r); Arch: linux-headers) and run this again.
EOF
}

if [ "$install_pkg" = 1 ] && ! modinfo v4l2loopback >/dev/null 2>&1; then
  kernel=$(uname -r)
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    # DKMS builds the module for the running kernel, so its headers are needed too.
    DEBIAN_FRONTEND=noninteractive apt-get install -y v4l2loopback-dkms "linux-headers-$kernel" ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y v4l2loopback-dkms
  elif command -v dnf >/dev/null 2>&1; then
    # Fedora ships it in RPM Fusion (free): https://rpmfusion.org/Configuration
    if ! dnf install -y v4l2loopback; then
      echo "install-v4l2loopback: enable RPM Fusion free first (https://rpmfusion.org/Configuration), then run this again" >&2
      exit 1
    fi
  elif command -v pacman >/dev/null 2>&1; then
    pacman -S --needed --noconfirm v4l2loopback-dkms linux-headers
  else
    echo "install-v4l2loopback: no apt-get, dnf or pacman here: install v4l2loopback with your" \
         "package manager (or from https://github.com/umlaeute/v4l2loopback), then run: $0 --no-install" >&2
    exit 1
  fi
fi
if ! modinfo v4l2loopback >/dev/null 2>&1; then
  echo "install-v4l2loopback: the package installed but no v4l2loopback module exists for kernel $(uname -r)." >&2
  secure_boot_help
  exit 1
fi

# Reload with our options: an already loaded module keeps its old ones otherwise.
if [ -e /sys/module/v4l2loopback ]; then
  modprobe -r v4l2loopback || {
    echo "install-v4l2loopback: v4l2loopback is loaded and busy (an app has the virtual camera open);" \
         "close OBS, the call app and vcam-me, then run this again" >&2
    exit 1
  }
fi
# shellcheck disable=SC2086 # OPTIONS is one word per option, the label quoted for modprobe
if ! eval modprobe v4l2loopback $OPTIONS; then
  secure_boot_help
  exit 1
fi

if [ "$persist" = 1 ]; then
  echo "v4l2loopback" > /etc/modules-load.d/vcam-me.conf
  echo "options v4l2loopback $OPTIONS" > /etc/modprobe.d/vcam-me.conf
  echo "install-v4l2loopback: loads at every boot (/etc/modules-load.d/vcam-me.conf, /etc/modprobe.d/vcam-me.conf)"
fi
for dev in /sys/devices/virtual/video4linux/video*; do
  [ -e "$dev/name" ] && [ "$(cat "$dev/name")" = "vcam-me" ] && echo "install-v4l2loopback: ready: /dev/$(basename "$dev") (\"vcam-me\")"
done
exit 0
