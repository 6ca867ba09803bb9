#!/usr/bin/env bash
# Set up, then run the main job on the bundled default: no camera needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# With no arguments, the demo render (`vcam-me` alone opens the tray app on a desktop).
[ $# -gt 0 ] || set -- demo
exec .venv/bin/vcam-me "$@"
