"""Closed-loop check of the avatar renderer; see vcam_me/training/closed_loop.py.

    python scripts/closed_loop_check.py [--avatar PHOTO_OR_FOLDER] [--clips d0 d5 ...] [-v]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vcam_me.training.closed_loop import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
