"""The two shipped generators: card valid, weights match the card, ONNX contract (names, dynamic dims, range)."""

from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from streamgan.card import ModelCard, sha256_file  # noqa: E402
from streamgan.temporal import state_size  # noqa: E402

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


@pytest.mark.parametrize("task", ["derain", "derain_windshield", "day2night"])
def test_shipped_plugin(task):
    pdir = PLUGINS / task
    card = ModelCard.load(pdir / "card.yaml")
    assert card.task == task
    onnx_path = pdir / card.weights.file
    assert card.weights.sha256 == sha256_file(onnx_path)
    assert onnx_path.stat().st_size < 5_000_000
    assert card.training.steps and card.training.wall_time_s and card.training.data
    assert card.metrics["openvino_fps_640x360"] > 0  # measured and recorded (speed goals live in benchmarks/)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "input" and sess.get_outputs()[0].name == "output"
    m = card.processing.size_multiple
    for h, w in ((8 * m, 12 * m), (23 * m, 40 * m)):  # any multiple of size_multiple
        x = np.random.default_rng(0).uniform(-1, 1, (2, 3, h, w)).astype(np.float32)
        feeds = {"input": x}
        for s in card.temporal.state if card.temporal else ():  # a temporal model: a new stream's state
            sw, sh = state_size(w, h, card.processing, s.scale)
            feeds[s.input] = np.zeros((2, s.channels, sh, sw), np.float32)
        y = sess.run(["output"], feeds)[0]
        assert y.shape == x.shape and y.dtype == np.float32
        assert np.abs(y).max() <= 1.0 + 1e-6


def test_derain_card_meets_the_rain12_target():
    card = ModelCard.load(PLUGINS / "derain" / "card.yaml")
    assert card.metrics["rain12_input_psnr_y"] == 30.14
    assert card.metrics["rain12_psnr_y"] >= 32.14
    assert card.metrics["synthetic_holdout_psnr_y"] > card.metrics["synthetic_holdout_input_psnr_y"] + 3


def test_derain_windshield_runs_derains_network_and_halves_the_real_drop_area():
    """The windshield model's streak network is the shipped derain's (the same weights), its card records the
    real windshield clip's drop area at most half the input's with flicker no higher, and Rain12 kept above
    the floor the derain releases keep."""
    pytest.importorskip("torch")
    from trainer.train import weights_from_onnx

    card = ModelCard.load(PLUGINS / "derain_windshield" / "card.yaml")
    assert card.temporal is not None and card.temporal.state[0].scale == 2
    ours = weights_from_onnx(PLUGINS / "derain_windshield" / "model.onnx")
    derain = weights_from_onnx(PLUGINS / "derain" / "model.onnx")
    assert set(derain) <= set(ours) and all((ours[k] == derain[k]).all() for k in derain)
    m = card.metrics
    assert m["real_windshield_drop_area"] <= 0.5 * m["real_windshield_input_drop_area"]
    assert m["real_windshield_flicker_ratio"] <= 1.0
    assert m["rain12_psnr_y"] >= 32.14


def test_day2night_card_beats_both_baselines():
    """Against real dashcam night as recorded (night realism), the default exposure is nearer than the
    input and within 0.85 of the darkening filter's distance, as dark as real night frames, and keeps
    structure to 0.6 (the 0.7 of the bright exposure is not reached: docs/TRAINING.md); the bright
    exposure keeps the structure of the releases before."""
    m = ModelCard.load(PLUGINS / "day2night" / "card.yaml").metrics
    r = m["night_realism"]
    assert r["model"]["distance"] < r["input"]["distance"]
    assert r["model"]["distance"] <= 0.85 * r["darken_filter"]["distance"]
    real = r["real_mean_luma"].values()
    assert min(real) <= r["model"]["mean_luma"] <= max(real)
    assert m["structure_score"]["model"] >= 0.6
    assert m["sky"]["dark_frames"] == m["sky"]["frames_with_sky"]
    bright = m["night_exposures"]["bright"]
    assert bright["structure_score"] >= 0.7 and bright["night_realism"] > r["model"]["distance"]
