"""The installers' sources (installers/): the PyInstaller spec parses and bundles every folder
the app reads at run time, the runtime never needs what the spec leaves out, the scripts are
valid shell, the desktop entry and the driver options are right, and CI builds the bundle only
when asked. This cannot replace the build: scripts/build_bundle_ci.sh builds and smoke-tests it."""

from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vcam_me
from vcam_me import app
from vcam_me.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT
from vcam_me.models import load_manifest, models_dir

INSTALLERS = PROJECT_ROOT / "installers"
SPEC = INSTALLERS / "vcam_me.spec"


def spec_assignment(name: str):
    """The literal value the spec assigns to ``name`` at its top level."""
    tree = ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:  # an expression: evaluate the list part only
                return [ast.literal_eval(e) for e in node.value.left.elts] if isinstance(node.value, ast.BinOp) else None
    raise AssertionError(f"{SPEC.name} assigns no {name}")


def test_the_spec_is_valid_python():
    compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")


def test_the_spec_bundles_every_folder_the_app_reads_and_they_exist():
    folders = spec_assignment("DATA_FOLDERS")
    assert sorted(folders) == ["assets", "config", "models"]
    assert all((PROJECT_ROOT / f).is_dir() for f in folders)
    bundled = [PROJECT_ROOT / f for f in folders]
    # What the app opens relative to the project root lies inside one of them.
    read_at_run_time = [DEFAULT_CONFIG_PATH, app.BUNDLED_AVATAR, app.BUNDLED_DRIVING, app.TRUSTED_KEYS_DIR]
    training_only = spec_assignment("TRAINING_ONLY_MODELS")
    read_at_run_time += [models_dir() / entry.file for entry in load_manifest().values()
                         if entry.file not in training_only]
    for path in read_at_run_time:
        assert path.exists(), path
        assert any(path.resolve().is_relative_to(folder.resolve()) for folder in bundled), path


def test_the_models_left_out_are_opened_only_after_pytorch_is_imported():
    """The spec leaves training-only model files out of the bundle (which has no PyTorch). Every
    runtime function naming one must import the training package (which needs torch) first, so
    the installed app stops at the one-line 'needs PyTorch' message before it would look for the file."""
    training_only = spec_assignment("TRAINING_ONLY_MODELS")
    names = {name for name, entry in load_manifest().items() if entry.file in training_only}
    assert len(names) == len(training_only)  # each one is a manifest entry
    package = Path(vcam_me.__file__).parent
    checked = 0
    for source in package.rglob("*.py"):
        if "training" in source.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            constants = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)}
            if not constants & names:
                continue
            checked += 1
            imports = [n for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith(
                "vcam_me.training")]
            assert imports, f"{source.name}: {node.name} opens a model the bundle leaves out without needing PyTorch"
            first_use = min(n.lineno for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in names)
            assert min(n.lineno for n in imports) < first_use, f"{source.name}: {node.name}"
    assert checked  # the prior is used somewhere (setup), so this test looked at something


def test_what_the_spec_leaves_out_is_only_imported_inside_functions():
    """The bundle excludes training (PyTorch): no runtime module may import it at load time."""
    excludes = spec_assignment("excludes")
    assert {"torch", "vcam_me.training"} <= set(excludes)
    package = Path(vcam_me.__file__).parent
    offenders = []
    for source in package.rglob("*.py"):
        if "training" in source.relative_to(package).parts:
            continue
        for node in ast.parse(source.read_text(encoding="utf-8")).body:  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torch" or n.startswith(("torch.", "vcam_me.training")) for n in names):
                offenders.append(str(source.relative_to(package)))
    assert not offenders


def test_the_bundle_leaves_scipy_out_and_no_runtime_module_imports_it():
    """scipy (65 MiB in the bundle) is a test reference only: no module outside training names it,
    at module level or inside a function."""
    assert "scipy" in spec_assignment("excludes")
    package = Path(vcam_me.__file__).parent
    offenders = []
    for source in package.rglob("*.py"):
        if "training" in source.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "scipy" or n.startswith("scipy.") for n in names):
                offenders.append(f"{source.relative_to(package)}:{node.lineno}")
    assert not offenders


RUNTIME_PATHS_WITHOUT_SCIPY = """
import importlib, pkgutil, sys
import numpy as np
import vcam_me
for module in pkgutil.walk_packages(vcam_me.__path__, "vcam_me."):
    if not module.name.startswith("vcam_me.training") and not module.name.endswith("__main__"):
        importlib.import_module(module.name)
from vcam_me import app
from vcam_me.avatar import Avatar, AvatarRenderer
from vcam_me.consent.evidence import measure_speech
from vcam_me.evaluation.spotting import residuals
from vcam_me.types import ExpressionState
renderer = AvatarRenderer.create(Avatar.load(app.BUNDLED_AVATAR), (640, 360))
state = ExpressionState.neutral(0)
renderer.render(ExpressionState(0, state.au + 0.4, state.gaze + 0.2, np.float32([8, -5, 2])))
measure_speech(np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32))
residuals(np.random.default_rng(1).normal(size=(300, 4)), np.arange(300) * 1000 / 60)
print(sorted(name for name in sys.modules if name.split(".")[0] == "scipy"))
"""


def test_the_runtime_paths_load_no_scipy():
    """Every runtime module imported, a frame rendered (the warp built: Delaunay and sparse map),
    speech measured (the voice filter) and a spotter residual taken, in a fresh interpreter:
    scipy was never loaded, by our code or by a library's import."""
    result = subprocess.run([sys.executable, "-c", RUNTIME_PATHS_WITHOUT_SCIPY], check=False, capture_output=True,
                            text=True, timeout=120, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


ENCODER_STUBS = INSTALLERS / "linux" / "encoder_stubs"


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("cc") is None,
                    reason="the encoder stand-ins are Linux libraries built with a C compiler (cc)")
def test_the_encoder_stand_ins_refuse_their_codecs_and_h264_still_works(tmp_path):
    """What build.sh does before it swaps PyAV's x265 and SVT-AV1 libraries: this environment's
    PyAV, with the two replaced by the stand-ins built from installers/linux/encoder_stubs, must
    encode and decode H.264 and refuse libx265 and libsvtav1 with PyAV's error (check.py). The
    other libraries are linked, not copied; PyAV's modules are copied so that their
    $ORIGIN/../av.libs is the folder holding the stand-ins."""
    import av

    package = Path(av.__file__).parent
    libs = package.parent / "av.libs"
    shutil.copytree(package, tmp_path / "av")
    (tmp_path / "av.libs").mkdir()
    built = []
    for library in libs.iterdir():
        stub = {"libx265-": "x265.c", "libSvtAv1Enc-": "svtav1.c"}.get(library.name.split("-")[0] + "-")
        if stub is None:
            (tmp_path / "av.libs" / library.name).symlink_to(library)
            continue
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", f"-DX265_BUILD={library.name.rsplit('.so.', 1)[1]}",
                        f"-Wl,-soname,{library.name}", "-o", str(tmp_path / "av.libs" / library.name),
                        str(ENCODER_STUBS / stub)], check=True)
        built.append(library.name)
    if len(built) != 2:
        pytest.skip(f"this PyAV build does not link libx265 and libSvtAv1Enc as separate libraries ({built})")
    result = subprocess.run([sys.executable, str(ENCODER_STUBS / "check.py")], check=False, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "libx265 refused cleanly" in result.stdout and "libsvtav1 refused cleanly" in result.stdout


BLAS_SHIM = INSTALLERS / "linux" / "blas_shim"


def _build_blas_shim(output_dir: Path, *cc_flags: str) -> Path:
    """The shim for this environment's cv2 and numpy, built as build.sh builds it."""
    import cv2
    import numpy

    extension = next(Path(cv2.__file__).parent.glob("cv2*.so"))
    dynamic = subprocess.run(["readelf", "-d", str(extension)], check=True, capture_output=True, text=True).stdout
    opencv_blas = next((word.strip("[]") for line in dynamic.splitlines() if "(NEEDED)" in line
                        for word in line.split() if word.startswith("[libopenblas")), None)
    if opencv_blas is None:
        pytest.skip("this environment's cv2 uses no OpenBLAS of its own")
    numpy_blas = next((Path(numpy.__file__).parent.parent / "numpy.libs").glob("libscipy_openblas64_*.so"), None)
    if numpy_blas is None:
        pytest.skip("this environment's numpy vendors no libscipy_openblas64_")
    output_dir.mkdir(parents=True, exist_ok=True)
    shim = output_dir / opencv_blas
    subprocess.run(["bash", str(BLAS_SHIM / "make_shim.sh"), opencv_blas, str(numpy_blas), str(shim), *cc_flags],
                   check=True)
    return shim


def _run_blas_check(shim: Path, work_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BLAS_SHIM / "check.py"), str(shim), str(work_dir)], check=False,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or any(shutil.which(tool) is None for tool in ("cc", "nm", "readelf")),
                    reason="the BLAS shim is a Linux library built with a C compiler (cc); the check uses nm and readelf")
def test_cv2_gives_the_same_results_with_the_blas_shim_and_a_broken_shim_is_caught(tmp_path):
    """What build.sh does before it replaces OpenCV's OpenBLAS: this environment's cv2 with the
    shim (installers/linux/blas_shim, forwarding to numpy's 64-bit OpenBLAS) must call every
    function of the shim and give the same linear algebra and geometry as with its own OpenBLAS
    (check.py). And the check must catch a shim that swaps two arguments (alpha and beta of
    cblas_dgemm, built with -DBLAS_SHIM_BREAK_ARGUMENT_ORDER)."""
    good = _run_blas_check(_build_blas_shim(tmp_path / "good"), tmp_path / "good")
    assert good.returncode == 0, good.stdout + good.stderr[-2000:]
    assert re.search(r"cv2 called \d+ of the shim's 19 functions", good.stdout), good.stdout
    assert "results agree" in good.stdout

    broken = _run_blas_check(_build_blas_shim(tmp_path / "broken", "-DBLAS_SHIM_BREAK_ARGUMENT_ORDER"),
                             tmp_path / "broken")
    assert broken.returncode == 1, broken.stdout + broken.stderr[-2000:]
    assert "results differ with the shim" in broken.stdout
    assert re.search(r"^  gemm\w*/float64/\d+: relative difference", broken.stdout, re.MULTILINE), broken.stdout


ICU_DATA = INSTALLERS / "linux" / "icu_data"


def _icu_tools_missing() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the reduced ICU data is a Linux library"
    missing = [tool for tool in ("cc", "nm", "readelf") if shutil.which(tool) is None]
    if shutil.which("icupkg") is None and not Path("/usr/sbin/icupkg").is_file():
        missing.append("icupkg (icu-devtools)")
    return f"needs {', '.join(missing)}" if missing else None


def _run_build_icu_step(tmp_path: Path, keep_lines: list[str] | None = None
                        ) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """build.sh's ICU step alone, on a bundle folder holding this environment's libicudata, its work
    files under tmp_path; keep_lines replaces icu_data/keep.txt (in a copy of the folder).
    Returns the step's result, the bundle's library after it, and the environment's original."""
    pyside = Path(pytest.importorskip("PySide6").__file__).parent
    libraries = sorted((pyside / "Qt" / "lib").glob("libicudata.so.*"))
    if not libraries:
        pytest.skip("this PySide6 has no libicudata")
    script = (INSTALLERS / "linux" / "build.sh").read_text()
    start = script.index("# ICU data for English")
    end = script.index("\n", script.index('rm -rf "$icu_work/real-data"', start))
    step = script[start:end]
    for line in ("icu_data=installers/linux/icu_data\n", "icu_work=build/icu-data\n"):
        assert line in step, f"build.sh's ICU step no longer sets {line.strip()}"
    icu_data = ICU_DATA
    if keep_lines is not None:
        icu_data = tmp_path / "icu_data"
        shutil.copytree(ICU_DATA, icu_data)
        (icu_data / "keep.txt").write_text("\n".join(keep_lines) + "\n")
    step = step.replace("icu_data=installers/linux/icu_data\n", f"icu_data={icu_data}\n")
    step = step.replace("icu_work=build/icu-data\n", f"icu_work={tmp_path / 'work'}\n")
    internal = tmp_path / "_internal"
    (internal / "PySide6" / "Qt" / "lib").mkdir(parents=True)
    shutil.copy2(libraries[0], internal / "PySide6" / "Qt" / "lib")
    result = subprocess.run(["bash", "-c", f"set -euo pipefail\nPYTHON={sys.executable}\ninternal={internal}\n{step}"],
                            check=False, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    return result, internal / "PySide6" / "Qt" / "lib" / libraries[0].name, libraries[0]


@pytest.mark.skipif(_icu_tools_missing() is not None, reason=str(_icu_tools_missing()))
def test_the_build_reduces_qts_icu_data_and_qt_gives_the_same_results(tmp_path):
    """build.sh's ICU step on this environment's PySide6: the library it leaves has the same
    SONAME and symbol, a fraction of the size, and passed icu_data/check.py (Qt's results with
    the real and the reduced data compared)."""
    result, library, original = _run_build_icu_step(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "check: Qt gives the same results with the reduced ICU data" in result.stdout, result.stdout[-3000:]
    assert "ICU data reduced" in result.stdout, result.stderr[-3000:]
    assert library.stat().st_size < original.stat().st_size / 5
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], check=True, capture_output=True,
                             text=True).stdout.split()
    assert any(symbol.startswith("icudt") and symbol.endswith("_dat") for symbol in symbols), symbols
    dynamic = subprocess.run(["readelf", "-d", str(library)], check=True, capture_output=True, text=True).stdout
    assert f"Library soname: [{original.name}]" in dynamic


@pytest.mark.skipif(_icu_tools_missing() is not None, reason=str(_icu_tools_missing()))
def test_the_build_keeps_the_real_icu_data_when_qt_would_answer_differently(tmp_path):
    """Without English time-zone names, Qt names zones differently in English: the check sees it
    and the real library stays, byte for byte."""
    keep = [line for line in (ICU_DATA / "keep.txt").read_text().splitlines() if not line.startswith("zone/en")]
    result, library, original = _run_build_icu_step(tmp_path, keep)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DIFFERS" in result.stdout and "keeping the full ICU data" in result.stderr, result.stdout[-3000:]
    assert library.read_bytes() == original.read_bytes()


SCRIPTS = ["linux/build.sh", "linux/appimage.sh", "linux/smoke_test.sh", "linux/install.sh", "linux/install-v4l2loopback.sh",
           "macos/build.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_shell_scripts_parse(script):
    path = INSTALLERS / script
    assert path.is_file()
    result = subprocess.run(["bash", "-n", str(path)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if shutil.which("shellcheck"):  # where installed: quoting and logic slips too
        result = subprocess.run(["shellcheck", str(path)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_the_driver_script_loads_what_chrome_and_zoom_need_and_keeps_it():
    text = (INSTALLERS / "linux" / "install-v4l2loopback.sh").read_text(encoding="utf-8")
    assert "OPTIONS='devices=1 exclusive_caps=1 card_label=\"vcam-me\"'" in text
    assert "/etc/modules-load.d/" in text and "/etc/modprobe.d/" in text
    for manager in ("apt-get", "dnf", "pacman"):
        assert manager in text
    assert "mokutil" in text  # the Secure Boot explanation


def test_the_desktop_entry_is_complete():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(INSTALLERS / "linux" / "vcam-me.desktop", encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Exec"].startswith("vcam-me") and section["Name"]
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(INSTALLERS / "linux" / "vcam-me.desktop")],
                                check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_windows_and_macos_sources_are_there():
    iss = (INSTALLERS / "windows" / "vcam-me.iss").read_text(encoding="utf-8")
    assert "[Setup]" in iss and "regsvr32" in iss and "{A3FCE0F5-3493-419F-958A-ABA1250EC20B}" in iss
    assert (INSTALLERS / "windows" / "build.ps1").is_file()
    mac = (INSTALLERS / "macos" / "build.sh").read_text(encoding="utf-8")
    assert "hdiutil create" in mac
    spec = SPEC.read_text(encoding="utf-8")
    assert "NSCameraUsageDescription" in spec and "NSMicrophoneUsageDescription" in spec and "LSUIElement" in spec


def test_ci_builds_the_bundle_only_when_asked():
    lines = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    run = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    default_part, _, asked_part = run.partition('if [ "${VCAM_CI_BUNDLE:-0}" = "1" ]; then')
    assert "bash scripts/test.sh -q" in default_part and "build_bundle_ci.sh" not in default_part
    assert "scripts/build_bundle_ci.sh" in asked_part
    assert (PROJECT_ROOT / "scripts" / "build_bundle_ci.sh").is_file()


@pytest.mark.parametrize("frozen, words", [(True, "this installed build leaves PyTorch out"),
                                           (False, "pip install 'vcam-me[train]'")])
def test_personalisation_without_pytorch_says_where_to_get_it(monkeypatch, tmp_path, frozen, words):
    """The bundle leaves training out: the set-up then fails with one clear line, which in the
    frozen app does not tell the user to run pip."""
    import sys

    from vcam_me.errors import SetupError

    monkeypatch.setitem(sys.modules, "vcam_me.training.personalise", None)  # import fails as without torch
    if frozen:
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(SetupError, match="needs PyTorch") as err:
        app.personalise_avatar(tmp_path / "capture.mp4", tmp_path / "avatar")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_doctor_in_the_frozen_app_points_to_the_gpu_build_not_pip(monkeypatch, capsys, private_user_dirs):
    import sys

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    app.main(["doctor"])
    gpu_line = next(line for line in capsys.readouterr().out.splitlines() if " GPU " in line)
    assert "onnxruntime providers:" in gpu_line
    assert "pip install" not in gpu_line


def test_make_icon_draws_the_png_ico_and_icns_the_installers_use(tmp_path):
    from PIL import Image

    result = subprocess.run([sys.executable, str(INSTALLERS / "make_icon.py"), str(tmp_path)], check=False,
                            capture_output=True, text=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    png = Image.open(tmp_path / "vcam-me.png")
    assert png.size == (256, 256) and png.mode == "RGBA"
    assert png.getpixel((128, 128))[3] > 0 or png.getpixel((40, 128))[3] > 0  # something is drawn
    ico = Image.open(tmp_path / "vcam-me.ico")
    assert {(16, 16), (32, 32), (256, 256)} <= set(ico.info["sizes"])
    assert Image.open(tmp_path / "vcam-me.icns").size == (1024, 1024)
    # the builds use them
    assert "make_icon.py" in (INSTALLERS / "windows" / "build.ps1").read_text(encoding="utf-8")
    assert "SetupIconFile=" in (INSTALLERS / "windows" / "vcam-me.iss").read_text(encoding="utf-8")
    assert "make_icon.py" in (INSTALLERS / "macos" / "build.sh").read_text(encoding="utf-8")
    assert "make_icon.py" in (INSTALLERS / "linux" / "appimage.sh").read_text(encoding="utf-8")
    assert "icon=EXE_ICON" in SPEC.read_text(encoding="utf-8")
