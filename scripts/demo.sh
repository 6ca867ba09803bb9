#!/usr/bin/env bash
# Set up, then run the main job on the bundled default: no camera needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/vcam-me "$@"
