"""Avatar archives: export and import round trip, and hand-made hostile zips that must be
refused with one line, writing nothing anywhere (not beside the avatars, not above them, and
no half-unpacked avatar)."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcam_me.avatar import Avatar
from vcam_me.avatar import archive as archive_module
from vcam_me.avatar.archive import (
    MAX_MEMBERS,
    export_avatar_archive,
    import_avatar_archive,
)
from vcam_me.errors import AvatarError, VcamError

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "sample"


def _sample_members() -> dict[str, bytes]:
    """The sample avatar as archive members: avatar.json, the files it lists, consent.json."""
    meta = json.loads((SAMPLE / "avatar.json").read_text(encoding="utf-8"))
    names = ["avatar.json", *meta["files"], "consent.json"]
    return {name: (SAMPLE / name).read_bytes() for name in names}


def _with_hashes(members: dict[str, bytes]) -> dict[str, bytes]:
    """``members`` with avatar.json's hashes made to match the files (to get past the hash check)."""
    meta = json.loads(members["avatar.json"])
    meta["files"] = {name: hashlib.sha256(members[name]).hexdigest() for name in meta["files"]}
    return dict(members, **{"avatar.json": json.dumps(meta).encode()})


def _zip(path: Path, members: dict[str, bytes] | list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names made on purpose
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for info, data in items:
                z.writestr(info, data)
    return path


def _set_stated_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size the central directory states for ``member``."""
    data = bytearray(path.read_bytes())
    start = 0
    while (at := data.find(b"PK\x01\x02", start)) >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_len].decode() == member:
            struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return
        start = at + 4
    raise AssertionError(f"{member} not in {path}")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def avatars(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "avatars"
    folder.mkdir(parents=True)
    return folder


def _refused(archive: Path, avatars: Path, match: str) -> str:
    """Import ``archive`` expecting a one-line refusal matching ``match``; check nothing was written."""
    root = avatars.parent.parent
    before = _tree(root)
    with pytest.raises(VcamError, match=match) as info:
        import_avatar_archive(archive, avatars, "friend")
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert _tree(root) == before, "the refused import wrote or left something"
    assert not Path("/tmp/vcam_me_evil").exists()
    return message


# -- round trip ------------------------------------------------------------------------------
def test_export_then_import_gives_the_same_avatar_with_its_consent_record(tmp_path: Path, avatars: Path) -> None:
    out = export_avatar_archive(SAMPLE, tmp_path / "sample.zip")
    with zipfile.ZipFile(out) as z:
        names = sorted(z.namelist())
    meta = json.loads((SAMPLE / "avatar.json").read_text(encoding="utf-8"))
    assert names == sorted(["avatar.json", "consent.json", *meta["files"]]), "SOURCE.md is not listed, so not carried"

    imported = import_avatar_archive(out, avatars, "friend")
    assert imported.folder == avatars / "friend"
    assert imported.content_id == Avatar.load(SAMPLE).content_id
    assert (avatars / "friend" / "consent.json").read_bytes() == (SAMPLE / "consent.json").read_bytes()
    assert _tree(avatars) == {"friend", *(f"friend/{n}" for n in names)}, "no staging folder left behind"


def test_export_carries_a_personalised_network_in_its_subfolder(tmp_path: Path, avatars: Path) -> None:
    from vcam_me.avatar.avatar import add_network, save_avatar

    folder = tmp_path / "own"
    own = save_avatar(Avatar.load(SAMPLE), folder)
    fake_net = tmp_path / "net.onnx"
    fake_net.write_bytes(b"onnx bytes stand in: the archive only moves and hashes them")
    add_network(own, fake_net)
    out = export_avatar_archive(folder, tmp_path / "own.zip")
    with zipfile.ZipFile(out) as z:
        assert "network/appearance.onnx" in z.namelist()
    imported = import_avatar_archive(out, avatars, "own")
    assert imported.network_files() == {"fp32": avatars / "own" / "network" / "appearance.onnx"}


def test_export_never_overwrites_a_file(tmp_path: Path) -> None:
    out = tmp_path / "mine.zip"
    out.write_bytes(b"the user's own file")
    with pytest.raises(AvatarError, match="already exists"):
        export_avatar_archive(SAMPLE, out)
    assert out.read_bytes() == b"the user's own file"


def test_export_refuses_a_damaged_avatar(tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    save = __import__("vcam_me.avatar.avatar", fromlist=["save_avatar"]).save_avatar
    save(Avatar.load(SAMPLE), folder)
    (folder / "blendshapes.npy").write_bytes(b"changed")
    with pytest.raises(AvatarError, match="does not match its hash"):
        export_avatar_archive(folder, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_import_never_replaces_an_existing_avatar(tmp_path: Path, avatars: Path) -> None:
    out = export_avatar_archive(SAMPLE, tmp_path / "sample.zip")
    (avatars / "friend").mkdir()
    (avatars / "friend" / "note.txt").write_text("mine")
    with pytest.raises(AvatarError, match=r"already exists .*--name"):
        import_avatar_archive(out, avatars, "friend")
    assert _tree(avatars) == {"friend", "friend/note.txt"}
    assert import_avatar_archive(out, avatars, "friend 2").folder == avatars / "friend 2"


@pytest.mark.parametrize("name", ["../up", "a/b", "", ".hidden", "con:x", "x" * 65, "a..b"])
def test_import_refuses_a_name_that_is_not_one_plain_folder(tmp_path: Path, avatars: Path, name: str) -> None:
    out = export_avatar_archive(SAMPLE, tmp_path / "sample.zip")
    with pytest.raises(AvatarError, match="avatar name"):
        import_avatar_archive(out, avatars, name)
    assert _tree(avatars) == set()


@pytest.mark.parametrize("stem, name", [("my avatar (1)", "my avatar -1"), ("Jane's face", "Jane-s face"),
                                        ("...", "avatar"), ("../../x", "x"), ("ü" * 80, "avatar"), ("a" * 80, "a" * 64)])
def test_a_default_name_is_made_valid_from_the_archive_name(stem: str, name: str) -> None:
    from vcam_me.avatar.archive import avatar_name_from, check_avatar_name

    assert avatar_name_from(stem) == name
    check_avatar_name(name)


# -- hostile archives ----------------------------------------------------------------------------
def _symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: external_attr's high 16 bits are st_mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_traversal_member_is_refused(tmp_path: Path, avatars: Path) -> None:
    items = [*_sample_members().items(), ("../evil", b"x"), ("../../evil", b"x")]
    _refused(_zip(tmp_path / "a.zip", items), avatars, r"'\.\./evil'.*'\.\.' part")
    assert not (avatars / "evil").exists() and not (avatars.parent / "evil").exists()


def test_absolute_member_is_refused(tmp_path: Path, avatars: Path) -> None:
    items = [*_sample_members().items(), ("/tmp/vcam_me_evil", b"x")]
    _refused(_zip(tmp_path / "a.zip", items), avatars, "absolute path")


@pytest.mark.parametrize("bad, reason", [
    ("C:/evil", "absolute path"), ("..\\evil", "backslash"), ("network\\..\\..\\evil", "backslash"),
    ("nul.npy", "Windows reserves"), ("network/COM1", "Windows reserves"), ("trailing. ", "Windows reserves"),
    ("ok/./x", r"'\.'"), ("a\x01b", "control characters"), ("a\x00b", "not listed"), ("stream:evil", "':'"),
])
def test_windows_and_odd_names_are_refused(tmp_path: Path, avatars: Path, bad: str, reason: str) -> None:
    members = _sample_members()
    # zipfile turns some of these into plain names when it writes; set the raw name afterwards
    info = zipfile.ZipInfo("placeholder")
    info.filename = bad
    _refused(_zip(tmp_path / "a.zip", [*members.items(), (info, b"x")]), avatars, reason)


def test_symlink_member_is_refused_even_when_listed(tmp_path: Path, avatars: Path) -> None:
    members = _sample_members()
    items = [(n, d) for n, d in members.items() if n != "reference.png"] + [(_symlink_member("reference.png"), b"/etc/passwd")]
    _refused(_zip(tmp_path / "a.zip", items), avatars, "symbolic link")


def test_an_encrypted_member_is_refused(tmp_path: Path, avatars: Path) -> None:
    path = _zip(tmp_path / "a.zip", _sample_members())
    data = bytearray(path.read_bytes())
    # zipfile writes no encrypted members: set the "encrypted" bit in the headers by hand
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            data[at + flags_at] |= 0x1
            start = at + 4
    path.write_bytes(bytes(data))
    _refused(path, avatars, "encrypted")


def test_duplicate_members_are_refused(tmp_path: Path, avatars: Path) -> None:
    items = [*_sample_members().items(), ("landmarks.npy", b"second copy")]
    _refused(_zip(tmp_path / "a.zip", items), avatars, "appears twice")
    items = [*_sample_members().items(), ("LANDMARKS.npy", b"same name on a case-insensitive disk")]
    _refused(_zip(tmp_path / "b.zip", items), avatars, "appears twice")


def test_too_many_members_are_refused(tmp_path: Path, avatars: Path) -> None:
    items = [*_sample_members().items(), *((f"f{i}.npy", b"") for i in range(MAX_MEMBERS))]
    _refused(_zip(tmp_path / "a.zip", items), avatars, "more than the 64")


def test_zip_bomb_is_refused_before_unpacking(tmp_path: Path, avatars: Path) -> None:
    path = _zip(tmp_path / "a.zip", _sample_members())
    _set_stated_size(path, "landmarks.npy", 0xFFFF_FFF0)  # 4 GB of "landmarks"
    _refused(path, avatars, "zip bomb")


def test_a_member_bigger_than_it_states_is_refused(tmp_path: Path, avatars: Path) -> None:
    path = _zip(tmp_path / "a.zip", _sample_members())
    _set_stated_size(path, "reference.png", 100)
    _refused(path, avatars, "reference.png|CRC|stated size")


def test_a_real_bomb_under_a_lower_limit_is_refused(tmp_path: Path, avatars: Path, monkeypatch) -> None:
    # 8 MB of zeros deflate to a few kB; with the limit set to 4 MB the archive is a bomb
    monkeypatch.setattr(archive_module, "MAX_TOTAL_BYTES", 4 * 2**20)
    members = _sample_members()
    members["landmarks.npy"] = bytes(8 * 2**20)
    path = _zip(tmp_path / "a.zip", _with_hashes(members))
    assert path.stat().st_size < 2 * 2**20
    _refused(path, avatars, "zip bomb")


def test_a_file_not_listed_in_avatar_json_is_refused(tmp_path: Path, avatars: Path) -> None:
    items = [*_sample_members().items(), ("run_me.py", b"import os; os.system('echo owned')")]
    _refused(_zip(tmp_path / "a.zip", items), avatars, "'run_me.py' is not listed")


def test_a_folder_entry_with_nothing_listed_in_it_is_refused(tmp_path: Path, avatars: Path) -> None:
    items = [*_sample_members().items(), ("stash/", b"")]
    _refused(_zip(tmp_path / "a.zip", items), avatars, "'stash/' holds no file")


def test_a_tampered_file_is_refused_by_its_hash(tmp_path: Path, avatars: Path) -> None:
    members = _sample_members()
    members["blendshapes.npy"] = members["blendshapes.npy"][:-4] + b"\x00\x00\x80\x3f"
    message = _refused(_zip(tmp_path / "a.zip", members), avatars, "does not match its hash")
    assert ".partial" not in message, "the message names the archive, not the staging folder"


def test_a_listed_file_missing_from_the_archive_is_refused(tmp_path: Path, avatars: Path) -> None:
    members = _sample_members()
    del members["transform.npy"]
    _refused(_zip(tmp_path / "a.zip", members), avatars, "lists transform.npy")


class _WritesAFileWhenUnpickled:
    """Unpickling this calls ``open(marker, "w")``: the proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_an_object_array_npy_is_refused_without_unpickling(tmp_path: Path, avatars: Path) -> None:
    marker = tmp_path / "pickle_ran"
    members = _sample_members()
    buffer = io.BytesIO()
    payload = np.empty(3, dtype=object)
    payload[:] = [_WritesAFileWhenUnpickled(marker)] * 3
    np.save(buffer, payload, allow_pickle=True)
    members["landmarks.npy"] = buffer.getvalue()
    _refused(_zip(tmp_path / "a.zip", _with_hashes(members)), avatars, "landmarks.npy.*allow_pickle=False")
    assert not marker.exists(), "the .npy was unpickled"
    # the seam is real: loading the same bytes with pickle allowed does run the payload
    np.load(io.BytesIO(members["landmarks.npy"]), allow_pickle=True)
    assert marker.exists()


def test_a_malformed_consent_record_is_refused(tmp_path: Path, avatars: Path) -> None:
    from vcam_me.app import _check_carried_consent

    members = _sample_members()
    members["consent.json"] = b'{"v": 1, "cid": "forged"}'
    with pytest.raises(VcamError, match="not a valid consent record"):
        import_avatar_archive(_zip(tmp_path / "a.zip", members), avatars, "friend",
                              check_folder=_check_carried_consent)
    assert _tree(avatars) == set()


@pytest.mark.parametrize("content, match", [
    (b"", "not a readable zip"), (b"PK\x03\x04 truncated", "not a readable zip"),
    (b"just text, no archive", "not a readable zip"),
])
def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path, avatars: Path, content: bytes, match: str) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(content)
    _refused(path, avatars, match)


def test_a_truncated_archive_is_refused(tmp_path: Path, avatars: Path) -> None:
    whole = export_avatar_archive(SAMPLE, tmp_path / "whole.zip").read_bytes()
    path = tmp_path / "a.zip"
    path.write_bytes(whole[: len(whole) // 2])
    _refused(path, avatars, "not a readable zip")


def test_an_archive_without_avatar_json_is_refused(tmp_path: Path, avatars: Path) -> None:
    _refused(_zip(tmp_path / "a.zip", {"reference.png": b"x"}), avatars, "no avatar.json")


def test_a_bad_avatar_json_is_refused(tmp_path: Path, avatars: Path) -> None:
    members = _sample_members()
    members["avatar.json"] = b"[" * 100_000
    _refused(_zip(tmp_path / "a.zip", members), avatars, "not valid JSON")


# -- command line ----------------------------------------------------------------------------
def test_command_line_round_trip_and_one_line_refusals(tmp_path: Path, private_user_dirs, capsys) -> None:
    from vcam_me.app import main, own_avatars_dir

    out = tmp_path / "sample.zip"
    assert main(["avatar", "export", str(SAMPLE), str(out)]) == 0
    capsys.readouterr()
    assert main(["avatar", "import", str(out), "--name", "friend"]) == 0
    assert Avatar.load(own_avatars_dir() / "friend").content_id == Avatar.load(SAMPLE).content_id
    said = capsys.readouterr().out
    assert "its consent record" in said and ": valid" in said, said  # the sample's issuer is trusted everywhere
    assert main(["avatar", "export", "friend", str(tmp_path / "again.zip")]) == 0, "an own avatar by its name"
    odd = tmp_path / "Jane's face (1).zip"
    odd.write_bytes(out.read_bytes())
    assert main(["avatar", "import", str(odd)]) == 0
    assert (own_avatars_dir() / "Jane-s face -1" / "avatar.json").is_file()
    capsys.readouterr()

    assert main(["avatar", "import", str(out), "--name", "friend"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "Traceback" not in err

    evil = _zip(tmp_path / "evil.zip", [*_sample_members().items(), ("../../evil", b"x")])
    assert main(["avatar", "import", str(evil)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vcam-me: error: ") and "'..' part" in err
    assert not (own_avatars_dir() / "evil").exists() and not (own_avatars_dir().parent / "evil").exists()

    assert main(["avatar", "export", "nobody", str(tmp_path / "x.zip")]) == 2
    assert "no avatar of yours named 'nobody'" in capsys.readouterr().err


# -- fuzz: damaged and made-up archives ------------------------------------------------------------
_FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_VALID = io.BytesIO()
with zipfile.ZipFile(_VALID, "w", compression=zipfile.ZIP_DEFLATED) as _z:
    for _name, _data in _sample_members().items():
        _z.writestr(_name, _data)
VALID_ARCHIVE = _VALID.getvalue()
_NAMES = [*_sample_members(), "network/", "network/appearance.onnx", "../x", "/abs", "a\\b", "C:x", "x/../../y", "dup",
          "dup", "DUP", "", "consent.json"]


@st.composite
def damaged_archives(draw) -> bytes:
    data = bytearray(VALID_ARCHIVE)
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@st.composite
def made_up_archives(draw) -> bytes:
    members = _sample_members()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buffer, "w") as z:
            for name in draw(st.lists(st.sampled_from(_NAMES) | st.text(max_size=12), max_size=8)):
                info = zipfile.ZipInfo(name or "x")
                info.filename = name
                info.create_system = 3
                info.external_attr = draw(st.sampled_from([0, stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777,
                                                           stat.S_IFDIR | 0o755, stat.S_IFIFO | 0o644])) << 16
                z.writestr(info, members.get(name, draw(st.binary(max_size=64))))
    return buffer.getvalue()


@_FUZZ
@given(data=damaged_archives() | made_up_archives())
def test_any_archive_is_imported_whole_or_refused_leaving_nothing(tmp_path_factory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    avatars = root / "avatars"
    avatars.mkdir()
    (root / "a.zip").write_bytes(data)
    try:
        avatar = import_avatar_archive(root / "a.zip", avatars, "friend")
    except VcamError as err:
        assert "\n" not in str(err)
        assert _tree(root) == {"a.zip", "avatars"}, "a refused import left something behind"
        return
    assert avatar.folder == avatars / "friend"
    assert {p.relative_to(root).parts[0] for p in root.rglob("*")} == {"a.zip", "avatars"}


def test_a_network_that_reads_weights_from_outside_its_folder_is_refused_when_opened(tmp_path, avatars) -> None:
    """ONNX can keep weights in an "external data" file named by a relative path; one that
    points out of the avatar's folder would read a file of the user's into the network.
    ONNX Runtime refuses such a path; this guards that with the version we install."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from vcam_me.avatar.appearance import open_session
    from vcam_me.avatar.avatar import add_network, save_avatar
    from vcam_me.errors import ModelError

    (tmp_path / "secret.bin").write_bytes(b"the user's private bytes!")
    weights = TensorProto(name="w", data_type=TensorProto.INT32, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "../../../../secret.bin"), ("offset", "0"), ("length", "16")):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.INT32, [4])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weights])
    net = tmp_path / "net.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(net))
    own = save_avatar(Avatar.load(SAMPLE), tmp_path / "own")
    add_network(own, net)
    imported = import_avatar_archive(export_avatar_archive(own.folder, tmp_path / "own.zip"), avatars, "own")
    assert (imported.folder / "network" / "../../../../secret.bin").resolve() == tmp_path / "secret.bin"
    with pytest.raises(ModelError, match="escapes"):
        open_session(imported.network_files()["fp32"], device="cpu")
