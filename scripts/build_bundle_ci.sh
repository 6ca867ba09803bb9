#!/usr/bin/env bash
# CI step, off by default: build the Linux bundle and smoke-test the frozen binary outside the
# source tree. .ci/run calls it when VCAM_CI_BUNDLE=1; it can also be run alone after
# scripts/setup.sh. Takes a few minutes on 2 cores (PyInstaller, then the AppImage's zstd) and about
# 1.8 GB under dist/ and build/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
# icupkg shrinks Qt's ICU data in the bundle; a .venv made before setup.sh installed it skips setup
command -v icupkg >/dev/null 2>&1 || [ -x /usr/sbin/icupkg ] || bash scripts/setup.sh
.venv/bin/python -m pip install -q -e ".[ui,bundle]"
bash installers/linux/build.sh
bash installers/linux/smoke_test.sh dist/vcam-me
# The same bundle as one AppImage file, smoke-tested as a user runs it (mounted, not unpacked).
bash installers/linux/appimage.sh
bash installers/linux/smoke_test.sh "dist/vcam-me-$(.venv/bin/python -c 'import vcam_me; print(vcam_me.__version__)')-$(uname -m).AppImage"
