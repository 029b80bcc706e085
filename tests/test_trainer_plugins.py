"""The two shipped generators: card valid, weights match the card, ONNX contract (names, dynamic dims, range)."""

from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from streamgan.card import ModelCard, sha256_file  # noqa: E402
from streamgan.temporal import state_size  # noqa: E402

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


@pytest.mark.parametrize("task", ["derain", "day2night"])
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


def test_derain_card_records_the_real_windshield_drops_halved():
    """The shipped derain is temporal (a drop fill with its state at half the network's size), and its card
    records the real windshield clip's drop area at most half the input's with flicker no higher."""
    card = ModelCard.load(PLUGINS / "derain" / "card.yaml")
    assert card.temporal is not None and card.temporal.state[0].scale == 2
    m = card.metrics
    assert m["real_windshield_drop_area"] <= 0.5 * m["real_windshield_input_drop_area"]
    assert m["real_windshield_flicker_ratio"] <= 1.0


def test_derain_leaves_a_lone_image_to_its_network():
    """A lone image (a stream's first frame: the zero state) comes out of the temporal derain exactly as out of
    its derain network alone: the drop fill waits for the stream's history."""
    pytest.importorskip("torch")  # frame_derain() writes the network alone with the trainer
    from conftest import frame_derain

    card = ModelCard.load(PLUGINS / "derain" / "card.yaml")
    temporal = ort.InferenceSession(str(PLUGINS / "derain" / card.weights.file), providers=["CPUExecutionProvider"])
    alone = ort.InferenceSession(str(frame_derain() / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 180, 320)).astype(np.float32)
    s = card.temporal.state[0]
    sw, sh = state_size(320, 180, card.processing, s.scale)
    y, state = temporal.run(["output", s.output], {"input": x, s.input: np.zeros((1, s.channels, sh, sw), np.float32)})
    np.testing.assert_allclose(y, alone.run(["output"], {"input": x})[0], atol=1e-5)
    y2 = temporal.run(["output"], {"input": x, s.input: state})[0]  # the second frame: the fill begins
    assert np.abs(y2 - y).max() > 1e-3


def test_derain_fills_drops_that_stay_on_the_glass():
    """Held-out synthetic clips with drops on the glass, each one stream through the shipped derain: from the
    fifth frame on (its fill fully on) it is at least 1 dB (Y-PSNR) nearer the clean clip than its derain
    network alone, frame by frame."""
    pytest.importorskip("torch")
    from conftest import frame_derain
    from streamgan import Translator
    from trainer import metrics
    from trainer.temporal import WINDSHIELD_ONLY
    from trainer.video_eval import held_out_rain_clips

    clips = held_out_rain_clips(3, 8, seed=20_500, synth=WINDSHIELD_ONLY)
    ours, alone = Translator("derain", "openvino", precision="fp32"), Translator(str(frame_derain()), "openvino", precision="fp32")
    score = {"temporal": [], "frame": []}
    for i, (rainy, clean) in enumerate(clips):
        for name, out in (("temporal", ours.translate(np.stack(rainy), stream=i)),
                          ("frame", alone.translate(np.stack(rainy)))):
            score[name] += [metrics.psnr_y(o, c) for o, c in list(zip(out, clean))[4:]]
    assert np.mean(score["temporal"]) >= np.mean(score["frame"]) + 1.0, {k: np.mean(v) for k, v in score.items()}


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


def test_video_eval_fps_takes_its_ratio_round_by_round():
    """`temporal eval`'s end-to-end fps: every round of each plugin is kept, and the ratio it reports is the
    median of the ratios taken within each round (the machine's speed drifts between rounds)."""
    pytest.importorskip("torch")
    from conftest import REPO, frame_derain
    from trainer.video_eval import fps

    r = fps({"temporal": str(PLUGINS / "derain"), "frame": str(frame_derain())}, base="frame",
            clip=REPO / "samples" / "rainy_dashcam.mp4", frames=8, rounds=3)
    assert [len(v) for v in r["rounds"].values()] == [3, 3]
    per_round = sorted(a / b for a, b in zip(r["rounds"]["temporal"], r["rounds"]["frame"]))
    assert r["median_ratio"]["temporal_over_frame"] == pytest.approx(per_round[1], rel=0.05)  # fps rounded to 0.1
    assert r["frame"] == max(r["rounds"]["frame"])
