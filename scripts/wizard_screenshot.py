"""A picture of the set-up wizard's expression session, for the README: the wizard runs on
the bundled real clip (standing in for the camera) and the session page is grabbed while a
prompt counts down.

    .venv/bin/python scripts/wizard_screenshot.py OUT.png

Works without a display (QT_QPA_PLATFORM=offscreen draws the widgets into memory). Nothing
is trained and the capture it records is removed when the wizard closes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--prompt", type=int, default=6, help="grab while this prompt (1-based) is shown")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from vcam_me.app import BUNDLED_DRIVING
    from vcam_me.config import load_config
    from vcam_me.ui.qt_wizard import SetupWizard

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ui_screenshots import save_small

    app = QApplication.instance() or QApplication(["vcam-me"])
    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(cfg, capture=dataclasses.replace(cfg.capture, source=str(BUNDLED_DRIVING), loop=True,
                                                               pace="realtime"))
    with tempfile.TemporaryDirectory() as work:
        wizard = SetupWizard(cfg, countdown_s=1.0, avatars_root=Path(work) / "avatars", work_dir=Path(work) / "setup")
        wizard.show()

        def wait(condition, timeout_s: float) -> bool:
            end = time.monotonic() + timeout_s
            while time.monotonic() < end and not condition():
                app.processEvents()
                time.sleep(0.01)
            return condition()

        if not wait(wizard.pages["camera"].isComplete, 30):
            print("no face found in the clip", file=sys.stderr)
            return 1
        wizard.next()
        page = wizard.pages["session"]
        if not wait(lambda: page.session.index + 1 >= args.prompt and page.session.phase == "recording", 120):
            print("the session did not reach that prompt", file=sys.stderr)
            return 1
        wait(lambda: False, 0.3)  # a few polls: the page shows the newest frame
        save_small(wizard.grab(), args.out)
        wizard.reject()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
