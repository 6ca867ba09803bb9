"""Model files: find them in ``models/``, check their sha256 against ``models/manifest.toml``.

Every model the application loads goes through :func:`verified_model_path`, so a corrupt,
truncated or swapped file is a clear :class:`~vcam_me.errors.ModelError` naming the file,
never a crash deep inside an inference engine.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from vcam_me.errors import ModelError


def models_dir() -> Path:
    """The folder holding the shipped models: ``models/`` at the project root.

    ``VCAM_ME_MODELS_DIR`` points elsewhere (installers that keep models apart, tests).
    """
    override = os.environ.get("VCAM_ME_MODELS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    sha256: str
    source: str
    licence: str


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(folder: Path | None = None) -> dict[str, ModelEntry]:
    folder = Path(folder) if folder else models_dir()
    manifest = folder / "manifest.toml"
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model manifest not found: {manifest}") from None
    except tomllib.TOMLDecodeError as err:
        raise ModelError(f"model manifest {manifest} is not valid TOML: {err}") from None
    entries = {}
    for name, row in data.get("model", {}).items():
        try:
            entries[name] = ModelEntry(name, row["file"], row["sha256"].lower(), row["source"], row["licence"])
        except KeyError as err:
            raise ModelError(f"model manifest {manifest}: entry '{name}' lacks {err}") from None
    return entries


def verify_file(path: Path, expected_sha256: str) -> Path:
    """Return ``path`` if its sha256 is ``expected_sha256``; raise :class:`ModelError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    actual = sha256_of(path)
    if actual != expected_sha256.lower():
        raise ModelError(
            f"model file {path} has sha256 {actual[:12]}…, expected {expected_sha256[:12]}…; "
            "it is corrupt or was replaced: restore it from the release"
        )
    return path


_verified: dict[tuple[str, float, int], Path] = {}


def verified_model_path(name: str, folder: Path | None = None) -> Path:
    """Path of the manifest entry ``name`` after checking its hash (cached per file version)."""
    folder = folder or models_dir()
    entries = load_manifest(folder)
    if name not in entries:
        raise ModelError(f"no model named '{name}' in {folder / 'manifest.toml'} (have: {', '.join(sorted(entries))})")
    entry = entries[name]
    path = folder / entry.file
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _verified:
        _verified[key] = verify_file(path, entry.sha256)
    return _verified[key]
