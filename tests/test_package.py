import ast
from pathlib import Path

import vcam_me

PACKAGE = Path(vcam_me.__file__).parent
STAGES = ("capture", "tracking", "expression", "avatar", "consent", "output")


def test_public_surface():
    assert sorted(vcam_me.__all__) == sorted(
        ["AU_CHANNELS", "AvatarError", "BLENDSHAPE_NAMES", "CaptureError", "ConfigError", "ConsentError",
         "ExpressionState", "FaceObservation", "Frame", "ModelError", "OutputError", "RenderedFrame",
         "TrackingError", "VcamError", "__version__"]
    )
    for name in vcam_me.__all__:
        assert hasattr(vcam_me, name)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_stages_never_import_each_other_or_the_ui_or_training():
    """design.md §1: stages exchange only types.py objects; the core never imports ui/ or training/."""
    for stage in STAGES:
        for path in (PACKAGE / stage).rglob("*.py"):
            for module in _imports(path):
                if not module.startswith("vcam_me."):
                    continue
                top = module.split(".")[1]
                assert top not in {s for s in STAGES if s != stage}, f"{path.relative_to(PACKAGE)} imports {module}"
                assert top not in ("ui", "training", "app", "pipeline", "cli"), f"{path.relative_to(PACKAGE)} imports {module}"
    for path in [PACKAGE / "pipeline.py", PACKAGE / "types.py", PACKAGE / "config.py"]:
        for module in _imports(path):
            assert not module.startswith(("vcam_me.ui", "vcam_me.training")), f"{path.name} imports {module}"
