"""An avatar: one portrait photo plus its face mesh, stored as a hash-checked folder.

Folder layout (every file's sha256 is in ``avatar.json``; :meth:`Avatar.load` checks them)::

    avatar.json       metadata: format, version, created, source, image size, files → sha256
    reference.png     the portrait (RGB, downscaled so the face is at most ~600 px tall)
    landmarks.npy     (478, 3) float32 MediaPipe-normalised landmarks of the portrait
    transform.npy     (4, 4) float32 MediaPipe facial transformation matrix (canonical → camera, cm)
    blendshapes.npy   (52,) float32 the portrait's own blendshape scores (its rest expression)
    network/          optional, a personalised network (``vcam-me setup``): appearance.onnx
                      (fp32), appearance.int8.onnx and geometry_refinement.onnx, named in
                      ``avatar.json`` under "network" and hash-checked like the rest

:func:`create_avatar` is pure apart from writing the folder: the caller runs the face
tracker (image mode, ``num_faces`` ≥ 2 so that several faces can be refused) and passes the
observations in. :func:`read_photo` turns any image file into RGB or a one-line
:class:`~vcam_me.errors.AvatarError`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vcam_me.errors import AvatarError
from vcam_me.media import image_problem
from vcam_me.models import sha256_of
from vcam_me.storage import atomic_copy, atomic_write_bytes, atomic_write_text, new_folder
from vcam_me.types import NUM_LANDMARKS, FaceObservation

FORMAT = "vcam_me.avatar"
VERSION = 1
#: Smallest face accepted, in pixels of the face's landmark bounding box (its shorter side).
MIN_FACE_PX = 96
#: The stored reference is downscaled so the face box is at most this tall (pixels): enough
#: for a 1080p output, small enough to keep the folder light.
MAX_STORED_FACE_PX = 640

_FILES = ("reference.png", "landmarks.npy", "transform.npy", "blendshapes.npy")


def read_photo(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8 RGB``; :class:`AvatarError` if it cannot be read."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise AvatarError(f"photo not found: {path}") from None
    except (OSError, ValueError) as err:
        raise AvatarError(f"photo {path} cannot be read: {getattr(err, 'strerror', None) or err}") from None
    if data.size == 0:
        raise AvatarError(f"photo {path} is empty")
    _probe_photo(data, path)
    # IMREAD_COLOR: 8-bit, 3 channels, EXIF orientation applied, alpha dropped
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # some decoders throw instead of returning None (e.g. a size over OpenCV's limit)
        bgr = None
    if bgr is None or bgr.ndim != 3 or min(bgr.shape[:2]) < 8:
        raise AvatarError(f"photo {path} is not a readable image (corrupt, truncated or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _probe_photo(data: np.ndarray, path: Path) -> None:
    """Refuse a photo by its header before OpenCV decodes it (see :mod:`vcam_me.media`)."""
    problem = image_problem(data.tobytes())
    if problem:
        raise AvatarError(f"photo {path} {problem}")


def _sha256(path: Path) -> str:
    # in blocks: a listed file can be of any size, and it is hashed before it is known to be ours
    return sha256_of(path)


#: Key of ``avatar.json``'s own checksum (SHA-256 of its other fields, canonical JSON), so a
#: changed byte in the manifest itself is caught too. Written since 2026-11; a manifest
#: without it (older avatars) is still read.
MANIFEST_CHECKSUM = "manifest_sha256"
#: What ``avatar.json``'s "network" may name.
NETWORK_KINDS = frozenset({"fp32", "int8", "geometry"})
#: Every field ``avatar.json`` may hold. Another one means a damaged manifest (a changed bit
#: in the checksum's own name would otherwise read as an older avatar without it) or one
#: from a newer vcam-me.
MANIFEST_FIELDS = frozenset({"format", "version", "created", "source", "image_size", "files", "network",
                             "extra_files", MANIFEST_CHECKSUM})


def manifest_checksum(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != MANIFEST_CHECKSUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def face_box(landmarks: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(x0, y0, width, height)`` in pixels of the landmarks' bounding box."""
    w, h = image_size
    xy = np.asarray(landmarks, np.float64)[:, :2] * (w, h)
    lo, hi = xy.min(0), xy.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


@dataclass(frozen=True)
class Avatar:
    """The finished parts of an avatar (build it with :func:`create_avatar` or :meth:`load`).

    Attributes:
        image: ``(H, W, 3) uint8 RGB`` reference portrait.
        landmarks: ``(478, 3) float32`` normalised landmarks of ``image``.
        transform: ``(4, 4) float32`` facial transformation matrix of ``image``.
        blendshapes: ``(52,) float32`` the portrait's own blendshape scores.
        files: file name → sha256 (what a consent record binds to); empty if never saved.
        meta: the rest of ``avatar.json``.
        folder: where it was loaded from or saved to, if anywhere.
    """

    image: np.ndarray
    landmarks: np.ndarray
    transform: np.ndarray
    blendshapes: np.ndarray
    files: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    folder: Path | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def content_id(self) -> str:
        """sha256 over the sorted file hashes: one identifier for the avatar's content."""
        text = "\n".join(f"{k} {v}" for k, v in sorted(self.files.items()))
        return hashlib.sha256(text.encode()).hexdigest()

    def network_files(self) -> dict[str, Path] | None:
        """The avatar's own network, ``{"fp32": path, "int8": path, "geometry": path}`` (the
        last two may be absent: avatars set up before the geometry refinement have none), or
        ``None`` when it has none (a photo avatar: the shipped generic prior draws it)."""
        names = self.meta.get("network")
        if not names or self.folder is None:
            return None
        return {kind: self.folder / name for kind, name in names.items() if name in self.files}

    @classmethod
    def load(cls, folder: str | Path) -> "Avatar":
        """Read an avatar folder and check every file against the hashes in ``avatar.json``."""
        folder = Path(folder)
        meta_path = folder / "avatar.json"
        if not folder.is_dir():
            raise AvatarError(f"avatar folder not found: {folder}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AvatarError(f"{folder} is not an avatar folder (no avatar.json)") from None
        except (OSError, ValueError) as err:
            raise AvatarError(f"{meta_path} cannot be read: {str(err).splitlines()[0][:200]}") from None
        except RecursionError:
            raise AvatarError(f"{meta_path} cannot be read: nested too deeply") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise AvatarError(f"{meta_path} is not a vcam_me avatar description")
        unknown = sorted(set(meta) - MANIFEST_FIELDS)
        if unknown:
            raise AvatarError(f"{meta_path} has an unknown field {unknown[0][:40]!r} (damaged, or made by a newer vcam-me)")
        if MANIFEST_CHECKSUM in meta and meta[MANIFEST_CHECKSUM] != manifest_checksum(meta):
            raise AvatarError(f"{meta_path} does not match its own checksum (modified or corrupt)")
        if meta.get("version") != VERSION:
            raise AvatarError(f"{meta_path}: avatar format version {meta.get('version')} is not supported (expected {VERSION})")
        files = meta.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise AvatarError(f"{meta_path}: 'files' must be a table of file name → sha256")
        for name in _FILES:
            if name not in files:
                raise AvatarError(f"{meta_path} lists no hash for {name}")
        for name in files:
            path = folder / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise AvatarError(f"{meta_path} names a file outside the avatar folder: {name}")
            if not path.is_file():
                raise AvatarError(f"avatar file missing: {path}")
            if _sha256(path) != files[name]:
                raise AvatarError(f"avatar file {path} does not match its hash in avatar.json (modified or corrupt)")
        _check_network(meta, files, meta_path)
        image = read_photo(folder / "reference.png")
        landmarks = _load_array(folder / "landmarks.npy", (NUM_LANDMARKS, 3))
        transform = _load_array(folder / "transform.npy", (4, 4))
        blend = _load_array(folder / "blendshapes.npy", (52,))
        rest = {k: v for k, v in meta.items() if k not in ("files", MANIFEST_CHECKSUM)}
        return cls(image, landmarks, transform, blend, dict(files), rest, folder)


def _load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A ``.npy`` file of finite numbers with ``shape``, as float32. Never unpickles: an object
    array (which would need pickle to load, and could run code) is refused."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, TypeError, EOFError) as err:
        raise AvatarError(f"avatar file {path} cannot be read: {str(err).splitlines()[0][:200]}") from None
    if not isinstance(array, np.ndarray):  # np.load reads a .npz (a zip) as a mapping
        array.close()
        raise AvatarError(f"avatar file {path} is not a single .npy array")
    if array.dtype.kind not in "iuf":
        raise AvatarError(f"avatar file {path} holds {array.dtype} values, not numbers")
    array = array.astype(np.float32)
    if array.shape != shape:
        raise AvatarError(f"avatar file {path} holds an array of shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise AvatarError(f"avatar file {path} holds values that are not finite numbers")
    return array


def _check_network(meta: dict, files: dict, meta_path: Path) -> None:
    """``"network"`` (``{"fp32": file, "int8": file, "geometry": file}``) and ``"extra_files"``
    in ``avatar.json`` name only files that ``"files"`` hashes."""
    network = meta.get("network")
    if network is None:
        network = {}
    if not isinstance(network, dict) or not network.keys() <= NETWORK_KINDS or (network and "fp32" not in network):
        raise AvatarError(f"{meta_path}: 'network' must be {{\"fp32\": file, \"int8\": file, \"geometry\": file}}")
    for kind, name in network.items():
        if not isinstance(name, str) or name not in files:
            raise AvatarError(f"{meta_path}: network.{kind} = {name!r} is not one of the hashed files")
    extra = meta.get("extra_files", [])
    if not isinstance(extra, list) or not all(isinstance(name, str) and name in files for name in extra):
        raise AvatarError(f"{meta_path}: 'extra_files' must list files that 'files' hashes")


def _check_faces(faces: Sequence[FaceObservation], image_size: tuple[int, int], min_face_px: int) -> FaceObservation:
    found = [f for f in faces if f.has_face]
    if not found:
        raise AvatarError("no face found in the photo: use a clear, frontal portrait")
    if len(found) > 1:
        raise AvatarError(f"{len(found)} faces found in the photo: use a photo with exactly one face")
    face = found[0]
    if tuple(face.image_size) != tuple(image_size):
        raise ValueError(f"face observation is for a {face.image_size} image, photo is {image_size}")
    _, _, bw, bh = face_box(face.landmarks, image_size)
    if min(bw, bh) < min_face_px:
        raise AvatarError(
            f"face too small: {bw:.0f}x{bh:.0f} px, need at least {min_face_px} px on each side "
            "(use a closer or higher-resolution photo)"
        )
    if face.transform is None or face.blendshapes is None:
        raise ValueError("face observation lacks its transformation matrix or blendshapes")
    return face


def create_avatar(
    photo_rgb: np.ndarray,
    faces: Sequence[FaceObservation],
    out_dir: str | Path | None,
    *,
    overwrite: bool = False,
    min_face_px: int = MIN_FACE_PX,
    source_name: str = "",
) -> Avatar:
    """Make an avatar from one portrait and the tracker's observations of it.

    Args:
        photo_rgb: ``(H, W, 3) uint8 RGB`` portrait.
        faces: every face the tracker found in it (image mode, ``num_faces`` ≥ 2).
        out_dir: folder to write; ``None`` returns an unsaved avatar (tests, previews).
            An existing non-empty folder is refused unless ``overwrite``.
        min_face_px: smallest accepted face (shorter side of the landmark box, pixels).
        source_name: free text kept in the metadata (e.g. the photo's file name and licence).

    Raises:
        AvatarError: no face, several faces, face too small, or the folder exists.
    """
    photo = np.asarray(photo_rgb)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise TypeError(f"expected (H, W, 3) uint8 RGB, got {photo.shape} {photo.dtype}")
    size = (int(photo.shape[1]), int(photo.shape[0]))
    face = _check_faces(faces, size, min_face_px)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists():
        if not out.is_dir():
            raise AvatarError(f"cannot create avatar: {out} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise AvatarError(f"avatar folder {out} already exists and is not empty (choose another or allow overwrite)")

    # Landmarks are normalised, so downscaling the image leaves them valid.
    _, _, _, bh = face_box(face.landmarks, size)
    scale = min(1.0, MAX_STORED_FACE_PX / bh)
    if scale < 1.0:
        new = (max(8, round(size[0] * scale)), max(8, round(size[1] * scale)))
        photo = cv2.resize(photo, new, interpolation=cv2.INTER_AREA)
    landmarks = np.asarray(face.landmarks, np.float32)
    transform = np.asarray(face.transform, np.float32)
    blend = np.asarray(face.blendshapes, np.float32)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source_name,
        "image_size": [int(photo.shape[1]), int(photo.shape[0])],
    }
    avatar = Avatar(np.ascontiguousarray(photo), landmarks, transform, blend, {}, meta, None)
    if out is None:
        return avatar
    return save_avatar(avatar, out)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _write_avatar_files(folder: Path, contents: dict[str, bytes], meta: dict) -> dict[str, str]:
    """Write ``contents`` (each file atomically; one whose bytes are already there is left
    alone), then ``avatar.json`` last, so the manifest never names a file not yet written."""
    files = {}
    for name, data in contents.items():
        path = folder / name
        if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
            atomic_write_bytes(path, data)
        files[name] = hashlib.sha256(data).hexdigest()
    for name in meta.get("extra_files", []):  # written by add_network: keep them bound
        files[name] = _sha256(folder / name)
    manifest = {k: v for k, v in meta.items() if k != MANIFEST_CHECKSUM} | {"files": files}
    manifest[MANIFEST_CHECKSUM] = manifest_checksum(manifest)
    atomic_write_text(folder / "avatar.json", json.dumps(manifest, indent=2) + "\n")
    return files


def save_avatar(avatar: Avatar, out: Path) -> Avatar:
    """Write ``avatar`` into ``out`` and return it with its file hashes.

    A new avatar (``out`` absent or empty) is built beside it and renamed into place, so it
    appears whole or not at all. An existing avatar folder (an overwrite, or
    :func:`add_network`) is updated file by file, each atomically and ``avatar.json`` last:
    a crash leaves the previous avatar loading as before, or, where a file it lists had
    already been replaced, refused by its hash check; never a silent mix.
    """
    out = Path(out)
    try:
        ok, png = cv2.imencode(".png", cv2.cvtColor(avatar.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise AvatarError("cannot encode the reference image as PNG")
        contents = {
            "reference.png": png.tobytes(),
            "landmarks.npy": _npy_bytes(avatar.landmarks),
            "transform.npy": _npy_bytes(avatar.transform),
            "blendshapes.npy": _npy_bytes(avatar.blendshapes),
        }
        if out.is_dir() and any(out.iterdir()):
            files = _write_avatar_files(out, contents, avatar.meta)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            with new_folder(out) as staging:
                files = _write_avatar_files(staging, contents, avatar.meta)
    except FileExistsError:
        raise AvatarError(f"cannot create avatar: {out} appeared meanwhile and is not empty (nothing was changed)") from None
    except OSError as err:
        raise AvatarError(f"cannot write avatar folder {out}: {err.strerror or err}") from None
    return Avatar(avatar.image, avatar.landmarks, avatar.transform, avatar.blendshapes, files, avatar.meta, out)


def add_network(avatar: Avatar, fp32: Path, int8: Path | None = None, calibration: Path | None = None, *,
                geometry: Path | None = None) -> Avatar:
    """Copy a personalised appearance network (and the owner's geometry refinement and
    calibration) into a saved avatar folder and bind them in ``avatar.json`` by hash; returns
    the avatar as loaded back.
    The avatar's content ID changes, so consent is recorded after this, for the avatar as it
    will be used."""
    if avatar.folder is None:
        raise ValueError("the avatar must be saved before a network is added")
    folder = avatar.folder
    network = {"fp32": "network/appearance.onnx"}
    copies = {network["fp32"]: fp32}
    if int8 is not None:
        network["int8"] = "network/appearance.int8.onnx"
        copies[network["int8"]] = int8
    if geometry is not None:
        network["geometry"] = "network/geometry_refinement.onnx"
        copies[network["geometry"]] = geometry
    if calibration is not None:
        copies["calibration.json"] = calibration
    try:
        (folder / "network").mkdir(exist_ok=True)
        for name, src in copies.items():
            atomic_copy(src, folder / name)
    except OSError as err:
        raise AvatarError(f"cannot write the network into {folder}: {err.strerror or err}") from None
    meta = dict(avatar.meta, network=network, extra_files=sorted(copies))
    save_avatar(Avatar(avatar.image, avatar.landmarks, avatar.transform, avatar.blendshapes, {}, meta, None), folder)
    return Avatar.load(folder)
