from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from streamgan.card import Int8, ModelCard, sha256_file  # noqa: E402
from trainer.export import ExportRefused, check_onnx, export_onnx, export_plugin  # noqa: E402
from trainer.networks import MobileGenerator, ResnetGenerator  # noqa: E402
from trainer.options import CheckpointError, Config  # noqa: E402
from trainer.train import Trainer  # noqa: E402

from trainer_helpers import make_images, tiny_config  # noqa: E402


@pytest.mark.parametrize("net", [MobileGenerator(8, 2), MobileGenerator(8, 2, residual=True, norm="none"),
                                 ResnetGenerator(8, 1)])
def test_export_matches_torch_with_dynamic_shapes(tmp_path, net):
    torch.manual_seed(0)
    for p in net.parameters():  # non-trivial weights (the residual net starts as the identity)
        p.data.normal_(0, 0.2)
    path = export_onnx(net, tmp_path / "m.onnx")
    err = check_onnx(net, path, shapes=((1, 3, 32, 48), (3, 3, 60, 100), (1, 3, 124, 36)))
    assert err <= 1e-4
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["output"]
    dims = sess.get_inputs()[0].shape
    assert all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))  # dynamic batch, height, width
    import onnx

    assert onnx.load(str(path)).opset_import[0].version == 17


def test_check_onnx_catches_a_mismatch(tmp_path):
    net = MobileGenerator(4, 1)
    path = export_onnx(net, tmp_path / "m.onnx")
    other = MobileGenerator(4, 1)
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        check_onnx(other, path)


def test_export_plugin_writes_valid_card_and_never_half_overwrites(tmp_path):
    cfg = Config.model_validate(tiny_config(tmp_path, optim__steps=3))
    Trainer(cfg).run()
    res = export_plugin(cfg, "cfg.yaml", evaluate=False)
    pdir = tmp_path / "plugin"
    card = ModelCard.load(pdir / "card.yaml")
    assert card.weights.sha256 == sha256_file(pdir / "model.onnx") == res["sha256"]
    assert card.training.steps == 3 and card.task == "derain"
    assert card.weights.opset == 17
    assert card.training.device == "cpu"
    # a plugin in place is not replaced by a model that was not compared with it
    cfg.data.crop += 8
    before = {p.name: p.read_bytes() for p in pdir.iterdir()}
    with pytest.raises(ExportRefused, match="cannot be compared"):
        export_plugin(cfg, "cfg.yaml", evaluate=False)
    assert {p.name: p.read_bytes() for p in pdir.iterdir()} == before
    # forced: what belonged to the old weights (their int8 model, their before/after picture) goes with them
    old = ModelCard.load(pdir / "card.yaml")
    old.model_copy(update={"int8": Int8(sha256="0" * 64, weights_sha256="0" * 64, passed=True)}).dump(pdir / "card.yaml")
    for name in ("model.int8.xml", "model.int8.bin", "before_after.png"):
        (pdir / name).write_bytes(b"of the old weights")
    export_plugin(cfg, "cfg.yaml", evaluate=False, force=True)
    assert sorted(p.name for p in pdir.iterdir()) == ["card.yaml", "model.onnx"]
    # the card tells how the weights were trained, also what the run changed that the config file does not say
    notes = ModelCard.load(pdir / "card.yaml").training.notes
    assert f"crop {cfg.data.crop - 8}," in notes and f"batch {cfg.data.batch_size} " in notes
    before = {p.name: p.read_bytes() for p in pdir.iterdir()}
    (tmp_path / "run" / "latest.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        export_plugin(cfg, "cfg.yaml", evaluate=False, force=True)
    assert {p.name: p.read_bytes() for p in pdir.iterdir()} == before
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 40, 56)).astype(np.float32)
    out = ort.InferenceSession(str(pdir / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == x.shape


def test_a_frame_by_frame_export_or_quantisation_leaves_a_temporal_plugin_alone(tmp_path):
    """The derain config's plugin folder holds the temporal derain: `export` refuses to replace it with a
    frame-by-frame network (unless --force) and `quantize` refuses to quantise it, both naming it, nothing
    written."""
    import shutil

    from trainer.options import DataError
    from trainer.quantize import quantize_plugin

    cfg = Config.model_validate(tiny_config(tmp_path, optim__steps=1))
    Trainer(cfg).run()
    pdir = tmp_path / "plugin"
    shutil.copytree(Path(__file__).resolve().parents[1] / "plugins" / "derain", pdir)
    before = {p.name: p.read_bytes() for p in pdir.iterdir() if p.is_file()}
    with pytest.raises(ExportRefused, match="holds a temporal model"):
        export_plugin(cfg, "cfg.yaml")
    with pytest.raises(DataError, match="holds a temporal model"):
        quantize_plugin(cfg)
    assert {p.name: p.read_bytes() for p in pdir.iterdir() if p.is_file()} == before


def test_int8_calibration_draws_from_every_source_never_from_held_out_frames(tmp_path):
    """A large folder of one rainy street does not crowd out a small folder of windshield drops (which
    gives all it has, the street the rest), and a held-out frame is never a calibration frame."""
    from trainer.data import read_image
    from trainer.evaluate import _resize
    from trainer.quantize import calibration_frames

    day = make_images(tmp_path / "day_pool", 10, seed=1)
    street = make_images(tmp_path / "street", 30, seed=2)
    glass = make_images(tmp_path / "glass", 3, seed=3)
    cfg = Config.model_validate(tiny_config(tmp_path, data__train_a=[str(day)],
                                            data__train_real=[str(street), str(glass)],
                                            data__holdout_a=[str(day / "img0.png")]))
    frames, used = calibration_frames(cfg, 16, size=(64, 48))
    assert len(frames) == 16 and frames[0].shape == (48, 64, 3)
    assert used == {str(day): 8, str(street): 5, str(glass): 3}
    held = _resize(read_image(day / "img0.png"), (64, 48))
    assert not any(np.array_equal(f, held) for f in frames)
    assert any(np.array_equal(f, _resize(read_image(day / "img1.png"), (64, 48))) for f in frames)
    frames, used = calibration_frames(cfg, 15, size=(64, 48))  # an odd count: the card counts what is used
    assert len(frames) == sum(used.values()) == 15


def test_calibration_spread_over_sources():
    from trainer.quantize import _spread

    assert _spread([1, 50, 50], 24) == [1, 12, 11]
    assert _spread([5, 5], 3) == [2, 1]
    assert _spread([2, 2], 10) == [2, 2]  # fewer files than asked: all of them
    assert _spread([], 5) == []


def test_quantize_shows_nncf_output_only_with_debug(tmp_path):
    """``streamgan-train quantize``: stdout is the JSON result, stderr the command's own lines; NNCF's log
    lines and progress bars show only with --debug."""
    import json
    import subprocess
    import sys

    from trainer_helpers import write_config

    r12 = tmp_path / "r12"
    make_images(r12 / "clean", 2, w=64, h=48)
    make_images(r12 / "rainy", 2, w=64, h=48, seed=5)
    raw = tiny_config(tmp_path, optim__steps=2, eval__rain12=str(r12))
    cfg = Config.model_validate(raw)
    Trainer(cfg).run()
    export_plugin(cfg, "cfg.yaml", evaluate=False)
    p = write_config(tmp_path, raw)
    for extra in ([], ["--debug"]):
        r = subprocess.run(
            [sys.executable, "-m", "trainer", "quantize", str(p), "--frames", "2", *extra],
            capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout)["int8"] == str(tmp_path / "plugin" / "model.int8.xml")
        assert "quantize: 2 calibration frames" in r.stderr
        if extra:
            assert "Statistics collection" in r.stderr
        else:
            assert "Statistics collection" not in r.stderr and ":nncf:" not in r.stderr, r.stderr[-2000:]
