"""Training the prior on a tiny real batch: the loss falls, resume is exact, ONNX matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vcam_me.errors import VcamError
from vcam_me.training import train_prior as T
from vcam_me.training.reenact_data import load_clip
from vcam_me.training.transfer_net import NetConfig, TransferNet

CLIP = Path(__file__).resolve().parents[2] / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"
#: The net is fully convolutional; a 64² crop keeps these tests fast on a busy 2-core machine.
SIZE = 64
#: |ONNX − PyTorch| allowed at fp32 (both compute the same graph; only summation order differs).
ONNX_PARITY_ATOL = 1e-4



@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread):
    yield

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> T.TrainData:
    cache = tmp_path_factory.mktemp("reenact_cache")
    return T.TrainData.stack([load_clip(CLIP, max_frames=6, stride=12, size=SIZE, cache_dir=cache)])


def _fresh(seed: int = 0, lr: float = 1e-3) -> tuple[TransferNet, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    net = TransferNet(NetConfig())
    return net, torch.optim.Adam(net.parameters(), lr=lr)


def _eval_loss(net: TransferNet, data: T.TrainData) -> dict[str, float]:
    net.eval()
    with torch.no_grad():
        terms = T.losses(net, data.batch(np.arange(len(data))))
    return {k: float(v) for k, v in terms.items()}


def test_a_few_steps_reduce_the_loss(data):
    net, opt = _fresh()
    before = _eval_loss(net, data)
    history = T.train(net, opt, data, steps=25, batch=4, seed=0)
    after = _eval_loss(net, data)
    assert len(history) == 25
    assert after["total"] < 0.8 * before["total"]
    assert after["l1"] + after["pyramid"] < before["l1"] + before["pyramid"]  # the appearance learns too


def test_resume_from_a_checkpoint_continues_identically(data, tmp_path):
    straight, opt = _fresh()
    T.train(straight, opt, data, steps=4, batch=2, seed=3)

    first, opt1 = _fresh()
    history = T.train(first, opt1, data, steps=2, batch=2, seed=3)
    settings = {"seed": 3, "batch": 2}
    T.save_checkpoint(tmp_path / T.CHECKPOINT, first, opt1, 2, history, settings)
    assert [p.name for p in tmp_path.iterdir()] == [T.CHECKPOINT], "no temporary left beside it"

    resumed, opt2 = _fresh(seed=99)  # different init: everything must come from the checkpoint
    start, history = T.load_checkpoint(tmp_path / T.CHECKPOINT, resumed, opt2, settings)
    assert start == 2 and len(history) == 2
    T.train(resumed, opt2, data, steps=4, start=start, batch=2, seed=3, history=history)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_from_other_settings_is_refused(data, tmp_path):
    net, opt = _fresh()
    T.save_checkpoint(tmp_path / T.CHECKPOINT, net, opt, 0, [], {"seed": 0, "batch": 8})
    with pytest.raises(VcamError, match="other settings"):
        T.load_checkpoint(tmp_path / T.CHECKPOINT, net, opt, {"seed": 1, "batch": 8})


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_checkpoint_is_reported_not_used(data, tmp_path, damage):
    net, opt = _fresh()
    path = tmp_path / T.CHECKPOINT
    T.save_checkpoint(path, net, opt, 3, [], {"seed": 0})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a checkpoint")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(T.DamagedCheckpoint, match=f"checkpoint {path} is damaged") as caught:
        T.load_checkpoint(path, net, opt, {"seed": 0})
    assert "\n" not in str(caught.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "nothing of it was loaded"


def test_onnx_export_matches_pytorch_and_int8_stays_close(data, tmp_path):
    net, opt = _fresh()
    T.train(net, opt, data, steps=3, batch=2, seed=0)
    appearance, geometry = T.export_onnx(net, tmp_path, SIZE)
    parity = T.onnx_parity(net, appearance, geometry, data)
    assert max(parity.values()) < ONNX_PARITY_ATOL, parity
    session = T.ort_session(appearance)
    assert session.get_providers() == ["CPUExecutionProvider"]
    int8 = T.quantize_int8(appearance, data)
    err = T._int8_error(appearance, int8, data)
    assert err["mean"] < 2.0 and err["p99"] < 20.0, err  # grey levels of the composited face


def test_spread_takes_an_even_subset_and_keeps_samples_whole(data):
    assert len(data) == 5 and data.spread(5) is data
    few = data.spread(3)
    for name in ("warped", "target", "face_mask", "condition", "displacement"):
        np.testing.assert_array_equal(getattr(few, name), getattr(data, name)[[0, 2, 4]])


def test_laplacian_pyramid_reconstructs_the_image():
    x = torch.rand(1, 3, 32, 32)
    bands = T.laplacian_pyramid(x, levels=3)
    y = bands[-1]
    for band in reversed(bands[:-1]):
        y = band + torch.nn.functional.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
    assert torch.allclose(x, y, atol=1e-6)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert T.main(["--clips", str(tmp_path), "--steps", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no clips given" in err


@pytest.mark.slow
def test_cli_trains_exports_and_resumes(tmp_path, capsys):
    out = tmp_path / "prior"
    common = ["--clips", str(CLIP), "--batch", "2", "--max-frames", "5", "--stride", "15",
              "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--latency-calls", "3"]
    assert T.main(common + ["--steps", "2"]) == 0
    assert T.main(common + ["--steps", "3", "--holdout", str(CLIP)]) == 0  # resumes at step 2
    report = json.loads((out / "report.json").read_text())
    assert set(report["face_l1_holdout"][CLIP.name]) == {"warp_only", "network"}
    assert report["steps"] == 3
    assert report["appearance_gmac"] <= 0.7
    assert max(report["onnx_parity_max_abs"].values()) < ONNX_PARITY_ATOL
    assert (out / "appearance.onnx").is_file() and (out / "geometry.onnx").is_file()
    assert (out / "geometry_refinement.onnx").is_file() and report["geometry_refinement_latency_ms_1thread_median"] > 0
    assert report["settings"]["stem"] == "shuffle" and report["settings"]["widths"] == list(NetConfig.widths)
    capsys.readouterr()
    # a network of another shape is refused by name, before any weights are loaded into it
    assert T.main(common + ["--steps", "4", "--stem", "full"]) == 2
    assert "other settings" in capsys.readouterr().err and report["steps"] == 3


@pytest.mark.slow
def test_cli_exports_trained_weights_without_training(tmp_path):
    """``--export-from``: the saved weights go to ONNX as they are (no step taken), at the
    widths they were made with."""
    torch.manual_seed(3)
    net = TransferNet(NetConfig(widths=(8, 16, 24, 32), stem="full"))  # a prior of the earlier shape
    prior = tmp_path / "prior.pt"
    torch.save(net.state_dict(), prior)
    out = tmp_path / "export"
    common = ["--clips", str(CLIP), "--max-frames", "4", "--stride", "15", "--cache-dir", str(tmp_path / "cache"),
              "--out", str(out), "--latency-calls", "2"]
    assert T.main(common + ["--export-from", str(prior)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 0 and "loss_last" not in report
    assert report["settings"]["exported_from"] == str(prior) and report["settings"]["stem"] == "full"
    assert max(report["onnx_parity_max_abs"].values()) < ONNX_PARITY_ATOL
    assert not (out / T.CHECKPOINT).exists()
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "appearance.onnx"), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[-1]
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    c = np.zeros((1, T.N_CONDITION), np.float32)
    residual, mask = session.run(None, {"warped": x, "condition": c})
    with torch.no_grad():
        want_residual, want_mask = net.appearance(torch.from_numpy(x), torch.from_numpy(c))
    assert np.abs(residual - want_residual.numpy()).max() < ONNX_PARITY_ATOL
    assert np.abs(mask - want_mask.numpy()).max() < ONNX_PARITY_ATOL


def test_cli_export_from_needs_an_existing_file_and_steps_otherwise(tmp_path, capsys):
    common = ["--clips", str(CLIP), "--out", str(tmp_path / "o")]
    assert T.main(common + ["--export-from", str(tmp_path / "missing.pt")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert T.main(common) == 2
    assert "--steps is required" in capsys.readouterr().err


def test_face_l1_of_an_untrained_net_is_the_warp(data):
    net, _ = _fresh()
    l1 = T.face_l1(net, data)
    assert 1.0 < l1["warp_only"] < 60.0
    assert abs(l1["network"] - l1["warp_only"]) < 0.05 * l1["warp_only"]
