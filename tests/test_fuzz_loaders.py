"""Fuzz the loaders of every file a user hands us: whatever the bytes, the only exceptions are
the project's own :class:`~vcam_me.errors.VcamError` subclasses, each one line.

Two kinds of input per loader: random bytes, and structured mutations of a valid file
(wrong types, out-of-range numbers, NaN and infinity, missing, unknown and duplicated keys,
huge strings and numbers, deep nesting), which reach much further past the parser.
Hypothesis runs derandomised (the same examples on every run, so CI is reproducible) with a
bounded number of examples per property. The hotkey combos, parsed by pynput, are fuzzed in
``tests/ui/test_hotkeys.py``'s neighbour ``tests/ui/test_fuzz_hotkeys.py`` (they need an X server).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vcam_me.avatar import Avatar
from vcam_me.config import DEFAULT_CONFIG_PATH, AppConfig, config_from_dict, load_config
from vcam_me.consent.records import record_from_json
from vcam_me.errors import VcamError
from vcam_me.expression.micro.library import DEFAULT_LIBRARY_PATH, MicroLibrary
from vcam_me.expression.micro.script import parse_script

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "avatars" / "sample"

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=50)


def only_own_errors(load: Callable[[], Any]) -> Any:
    """Run ``load``; a VcamError is a fine answer (one line); anything else fails the test."""
    try:
        result = load()
    except VcamError as err:
        message = str(err)
        assert message and "\n" not in message, f"not one line: {message!r}"
        assert len(message) < 1000, f"message too long ({len(message)} chars): {message[:200]}..."
        event(f"refused: {type(err).__name__}")  # --hypothesis-show-statistics: how deep the inputs got
        return None
    event("accepted")
    return result


# -- values that break loaders ------------------------------------------------------------------
HUGE_TEXT = "x" * 20_000
TOML_TOKENS = [
    "nan", "inf", "-inf", "+nan", "1e999", "-1e999", "0", "-1", "1", "2", "255", "65536", "-0.0", "0.5", "1e-320",
    "9" * 5000, "0x7fffffffffffffff", "true", "false", '""', '"auto"', '"none"', '"A-B"', '"E-A"', '"x.json"',
    f'"{HUGE_TEXT}"', '"\\u0000"', '"\\t\\n"', "[]", '[1, "a"]', "[[1, 2], [3]]", "{}", "{ a = 1 }",
    "{ median = 1, q1 = 2, q3 = 3 }", "1979-05-27T07:32:00Z", "07:32:00", "[" * 3000 + "]" * 3000,
    "{ a = " * 500 + "1" + " }" * 500,
]
JSON_TOKENS = [
    "null", "true", "NaN", "Infinity", "-Infinity", "1e999", "0", "-1", "9" * 5000, '""', f'"{HUGE_TEXT}"',
    '"\\ud800"', "[]", "{}", "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000,
]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from([HUGE_TEXT, "auto", "none", "random", "A-B", "E", "left", "both", "<ctrl>+<alt>+1", ""]),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)
json_values = st.recursive(
    st.none() | scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def mutated_text(draw, text: str, tokens: list[str]) -> str:
    """``text`` with 1-4 line edits: a value replaced, a line deleted, duplicated or cut short."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "value", "value", "delete", "duplicate", "cut", "insert"]))
        line = lines[i]
        if op == "value" and "=" in line:
            key = line.split("=", 1)[0]
            token = draw(st.sampled_from(tokens) | st.integers().map(str) | st.floats().map(repr))
            lines[i] = f"{key}= {token}"
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "cut":
            lines[i] = line[: draw(st.integers(0, len(line)))]
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(["[bogus]", "bogus = 1", "[type.new]", "[held]", "enabled = false",
                                                  '"quoted key" = 3', "[[type]]"])))
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


random_bytes = st.binary(max_size=2000) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))


@pytest.fixture(scope="module")
def scratch() -> Path:
    # module-scoped on purpose: hypothesis runs many examples per test call, and a
    # function-scoped tmp_path would be shared by all of them anyway
    with tempfile.TemporaryDirectory(prefix="vcam_fuzz_") as folder:
        yield Path(folder)


# -- (a) configuration -----------------------------------------------------------------------------
_SECTIONS = {f.name: [g.name for g in dataclasses.fields(f.type if isinstance(f.type, type) else
                                                         type(getattr(AppConfig(), f.name)))]
             for f in dataclasses.fields(AppConfig)}


@st.composite
def config_documents(draw) -> dict:
    doc: dict = {}
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([*_SECTIONS, "watermark", "label", "bogus"]))
        if draw(st.integers(0, 9)) == 0:
            doc[section] = draw(scalars)  # a section that is not a table
            continue
        table = doc.setdefault(section, {}) if isinstance(doc.get(section, {}), dict) else {}
        keys = [*_SECTIONS.get(section, []), "enabled", "disable", "bogus_key"]
        for _ in range(draw(st.integers(1, 4))):
            table[draw(st.sampled_from(keys))] = draw(toml_values)
        doc[section] = table
    return doc


@FUZZ
@given(doc=config_documents())
def test_config_from_structured_documents(doc: dict) -> None:
    cfg = only_own_errors(lambda: config_from_dict(doc))
    assert cfg is None or isinstance(cfg, AppConfig)


@FUZZ
@given(text=mutated_text(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"), TOML_TOKENS))
def test_config_file_with_mutated_lines(scratch: Path, text: str) -> None:
    path = scratch / "config.toml"
    path.write_text(text, encoding="utf-8")
    only_own_errors(lambda: load_config(path, use_user_config=False))


@FEW
@given(data=random_bytes)
def test_config_file_of_random_bytes(scratch: Path, data: bytes) -> None:
    path = scratch / "config.toml"
    path.write_bytes(data)
    only_own_errors(lambda: load_config(path, use_user_config=False))


# -- (b) micro-expression library (and scripted sequences) -------------------------------------------
def _small_library() -> str:
    """The bundled library cut after its first two types (loading fits each type: keep it quick)."""
    lines, types = [], 0
    for line in DEFAULT_LIBRARY_PATH.read_text(encoding="utf-8").splitlines():
        if line.startswith("[type."):
            types += 1
            if types > 2:
                break
        if not line.lstrip().startswith("#"):
            lines.append(line)
    return "\n".join(lines) + "\n"


SMALL_LIBRARY = _small_library()


def test_the_small_library_seed_is_valid(scratch: Path) -> None:
    path = scratch / "seed.toml"
    path.write_text(SMALL_LIBRARY, encoding="utf-8")
    assert len(MicroLibrary.load(path).types) == 2


@FUZZ
@given(text=mutated_text(SMALL_LIBRARY, TOML_TOKENS))
def test_micro_library_with_mutated_lines(scratch: Path, text: str) -> None:
    path = scratch / "micro.toml"
    path.write_text(text, encoding="utf-8")
    only_own_errors(lambda: MicroLibrary.load(path))


@FUZZ
@given(table=st.dictionaries(st.sampled_from(["intensity", "held", "conflicts", "type", "bogus", HUGE_TEXT[:5000]]),
                             toml_values, max_size=4),
       entry=st.dictionaries(st.sampled_from(["description", "source", "note", "clips", "weight", "aus", "variants",
                                              "optional", "laterality", "onset_ms", "offset_ms", "total_ms", "bogus",
                                              HUGE_TEXT[:5000]]),
                             toml_values, max_size=8))
def test_micro_library_structured(scratch: Path, table: dict, entry: dict) -> None:
    import tomllib

    base = tomllib.loads(SMALL_LIBRARY)
    name = next(iter(base["type"]))
    base["type"][name] = {**base["type"][name], **entry}
    base.update(table)
    path = scratch / "micro.toml"
    path.write_text(_to_toml(base), encoding="utf-8")
    only_own_errors(lambda: MicroLibrary.load(path))


@FEW
@given(data=random_bytes)
def test_micro_library_of_random_bytes(scratch: Path, data: bytes) -> None:
    path = scratch / "micro.toml"
    path.write_bytes(data)
    only_own_errors(lambda: MicroLibrary.load(path))


@pytest.fixture(scope="module")
def library() -> MicroLibrary:
    return MicroLibrary.load()


@FUZZ
@given(data=st.lists(st.dictionaries(st.sampled_from(["t_ms", "type", "side", "peak", "hold_ms", "bogus", HUGE_TEXT]),
                                     json_values,
                                     max_size=5), max_size=4) | json_values)
def test_micro_script_structured(library: MicroLibrary, data: Any) -> None:
    only_own_errors(lambda: parse_script(data, library, "fuzz.json"))


SAMPLE_SCRIPT = json.dumps([{"t_ms": 1200, "type": "suppressed_smile", "side": "left", "peak": 0.4},
                            {"t_ms": 3000, "type": "brow_raise", "hold_ms": 1500}], indent=1)


@FUZZ
@given(text=mutated_text(SAMPLE_SCRIPT, JSON_TOKENS) | st.sampled_from(JSON_TOKENS), data=random_bytes)
def test_micro_script_file_text_and_bytes(scratch: Path, library: MicroLibrary, text: str, data: bytes) -> None:
    from vcam_me.expression.micro.script import load_script

    path = scratch / "script.json"
    for content in (text.encode("utf-8", "surrogatepass"), data):
        path.write_bytes(content)
        only_own_errors(lambda: load_script(path, library))


def _sample_calibration() -> str:
    from vcam_me.types import AU_CHANNELS

    n = len(AU_CHANNELS)
    return json.dumps({"channels": list(AU_CHANNELS), "baseline": [0.05] * n, "maximum": [0.8] * n,
                       "pose_zero": [1.0, -2.0, 0.5]}, indent=1)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["channels", "baseline", "maximum", "pose_zero", "bogus"]), json_values,
                               max_size=3),
       text=mutated_text(_sample_calibration(), JSON_TOKENS))
def test_calibration_file(scratch: Path, changes: dict, text: str) -> None:
    """The owner's calibration, carried in a personalised avatar (``calibration.json``)."""
    from vcam_me.expression.calibration import Calibration

    path = scratch / "calibration.json"
    path.write_text(json.dumps({**json.loads(_sample_calibration()), **changes}, allow_nan=True), encoding="utf-8")
    only_own_errors(lambda: Calibration.load(path))
    path.write_text(text, encoding="utf-8")
    only_own_errors(lambda: Calibration.load(path))


def test_the_calibration_seed_is_valid(scratch: Path) -> None:
    from vcam_me.expression.calibration import Calibration

    path = scratch / "calibration.json"
    path.write_text(_sample_calibration(), encoding="utf-8")
    assert Calibration.load(path).pose_zero.shape == (3,)


# -- (d) avatar folders --------------------------------------------------------------------------
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


npy_payloads = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([
        _npy(np.zeros((478, 3), np.float64)), _npy(np.full((478, 3), np.nan, np.float32)),
        _npy(np.zeros((478, 3), np.complex64)), _npy(np.zeros((478, 3), "U3")), _npy(np.zeros((4, 4), bool)),
        _npy(np.zeros(52, [("a", "f4"), ("b", "i4")])), _npy(np.array([None] * 52, object)), _npy(np.zeros(0)),
        _npy(np.zeros((2, 2, 2))), _npy(np.array(3.0)),
    ]),
    st.builds(lambda shape: _npy(np.ones(shape, np.float32)),
              st.sampled_from([(478, 3), (4, 4), (52,), (478,), (3, 478), (52, 1), (16,)])),
)
image_payloads = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"\x89PNG\r\n\x1a\n", (SAMPLE / "reference.png").read_bytes()[:5000], b"\xff\xd8\xff\xe0"]),
)


@st.composite
def avatar_mutations(draw) -> list[tuple[str, Any]]:
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["meta_value", "meta_delete", "meta_file", "network", "npy", "image",
                                     "file_to_folder", "remove", "meta_text"]))
        if kind in ("meta_value", "meta_delete"):
            ops.append((kind, draw(st.sampled_from(["format", "version", "files", "network", "image_size",
                                                    "extra_files", "bogus"])), draw(json_values)))
        elif kind == "meta_file":
            ops.append((kind, draw(st.sampled_from(["reference.png", "landmarks.npy", "../escape", "/etc/hostname",
                                                    "", ".", "a\x00b", "network/appearance.onnx", HUGE_TEXT[:300]])),
                        draw(json_values)))
        elif kind == "network":
            ops.append((kind, draw(json_values), None))
        elif kind == "npy":
            ops.append((kind, draw(st.sampled_from(["landmarks.npy", "transform.npy", "blendshapes.npy"])),
                        draw(npy_payloads)))
        elif kind == "image":
            ops.append((kind, "reference.png", draw(image_payloads)))
        elif kind in ("file_to_folder", "remove"):
            ops.append((kind, draw(st.sampled_from(["reference.png", "landmarks.npy", "avatar.json"])), None))
        else:
            ops.append((kind, draw(st.sampled_from(JSON_TOKENS)), None))
    return ops


def _apply(folder: Path, ops: list[tuple[str, Any, Any]]) -> None:
    meta_path = folder / "avatar.json"
    for kind, key, value in ops:
        if meta_path.is_dir():
            break  # turned into a folder by an earlier step: nothing more to edit
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # an earlier step broke it on purpose
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        files = meta.get("files") if isinstance(meta.get("files"), dict) else {}
        if kind == "meta_value":
            meta[key] = value
        elif kind == "meta_delete":
            meta.pop(key, None)
        elif kind == "meta_file":
            files[key] = value
            meta["files"] = files
        elif kind == "network":
            meta["network"] = value
        elif kind in ("npy", "image"):
            if (folder / key).is_dir():
                continue
            (folder / key).write_bytes(value)
            files[key] = hashlib.sha256(value).hexdigest()  # a matching hash: get past the check
            meta["files"] = files
        elif kind == "file_to_folder":
            target = folder / key
            if target.is_file():
                target.unlink()
                target.mkdir()
            continue
        elif kind == "remove":
            target = folder / key
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            continue
        elif kind == "meta_text":
            meta_path.write_text(key, encoding="utf-8")
            continue
        meta_path.write_text(json.dumps(meta, allow_nan=True), encoding="utf-8")


@FUZZ
@given(ops=avatar_mutations())
def test_avatar_folder_mutated_from_a_valid_one(scratch: Path, ops: list) -> None:
    folder = scratch / "avatar"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(SAMPLE, folder)
    _apply(folder, ops)
    avatar = only_own_errors(lambda: Avatar.load(folder))
    if avatar is not None:
        assert avatar.landmarks.shape == (478, 3) and np.isfinite(avatar.landmarks).all()
        avatar.network_files()  # what the renderer asks next must not crash either


# -- (e) consent records -------------------------------------------------------------------------
SAMPLE_RECORD = json.loads((SAMPLE / "consent.json").read_text(encoding="utf-8"))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from([*SAMPLE_RECORD, "bogus"]), json_values, max_size=4),
       drop=st.lists(st.sampled_from(list(SAMPLE_RECORD)), max_size=2))
def test_consent_record_structured(changes: dict, drop: list) -> None:
    data = {k: v for k, v in SAMPLE_RECORD.items() if k not in drop}
    data.update(changes)
    text = json.dumps(data, allow_nan=True)
    only_own_errors(lambda: record_from_json(text))
    only_own_errors(lambda: record_from_json(text.encode("utf-8")))


@FUZZ
@given(text=mutated_text(json.dumps(SAMPLE_RECORD, indent=1), JSON_TOKENS) | st.sampled_from(JSON_TOKENS),
       data=random_bytes)
def test_consent_record_text_and_bytes(text: str, data: bytes) -> None:
    only_own_errors(lambda: record_from_json(text))
    only_own_errors(lambda: record_from_json(data))


@pytest.fixture(scope="module")
def registry(scratch: Path):
    from vcam_me.app import TRUSTED_KEYS_DIR
    from vcam_me.consent.registry import ConsentRegistry

    return ConsentRegistry.open(scratch / "consent", extra_trusted_dirs=[TRUSTED_KEYS_DIR])


@FEW
@given(text=mutated_text(json.dumps(SAMPLE_RECORD, indent=1), JSON_TOKENS), data=random_bytes)
def test_consent_record_file_checked_by_the_registry(scratch: Path, registry, text: str, data: bytes) -> None:
    from vcam_me.consent.records import hash_avatar_folder

    hashes = hash_avatar_folder(SAMPLE)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    path = scratch / "consent.json"
    for content in (text.encode("utf-8", "surrogatepass"), data):
        path.write_bytes(content)
        verdict = only_own_errors(lambda: registry.check(path, hashes, now, use="render"))
        assert verdict is None or verdict.status in ("valid", "tampered", "unknown", "expired", "revoked",
                                                     "not-yet-valid", "wrong-avatar", "out-of-scope")


def _revocation_line(registry) -> bytes:
    """One genuine signed line of a revocation list, to mutate."""
    from vcam_me.consent.registry import Revocation, revocation_line

    key = registry.issuer
    moment = datetime(2026, 11, 24, tzinfo=UTC)
    return revocation_line(Revocation(0x123456789A, "fuzz", moment, key.key_id), "", key)


@FUZZ
@given(text=st.sampled_from(JSON_TOKENS) | st.text(max_size=200), data=random_bytes, cut=st.integers(0, 400))
def test_revocation_list_never_raises(registry, text: str, data: bytes, cut: int) -> None:
    """The registry's revocation list: damage is reported as problems (every check then fails
    closed as tampered), never raised."""
    from vcam_me.consent.registry import parse_revocations

    line = _revocation_line(registry)
    for content in (line + text.encode("utf-8", "surrogatepass") + b"\n", data, line[:cut], line + data):
        result = parse_revocations(content, registry.trusted)
        assert isinstance(result.problems, tuple)


@FEW
@given(data=random_bytes | st.sampled_from([b"-----BEGIN PUBLIC KEY-----\n",
                                             b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]))
def test_public_key_files(scratch: Path, data: bytes) -> None:
    """Keys a user adds to ``trusted/`` (and the issuer's own ``.pub``)."""
    from vcam_me.consent.keys import load_public_key

    path = scratch / "friend.pub"
    path.write_bytes(data)
    only_own_errors(lambda: load_public_key(path))


# -- a small TOML writer for the structured library documents --------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string (\\u escapes too)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def _to_toml(doc: dict) -> str:
    """Top-level keys as ``key = inline value`` (tables inline too): enough for a loader's input."""
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in doc.items())
