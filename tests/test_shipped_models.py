"""The shipped plugins, run through the runtime the way users run them (OpenVINO, no torch)."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest

from conftest import CLIPS, DATA, REPO, need, read_video, run_cli

SAMPLE = REPO / "samples" / "rainy_dashcam.mp4"
# burnt-in text through the derain, its band's Y-PSNR to the input from the 5th frame: the streak network
# alone keeps 28.4 dB; 2026.12.07.3's drop fill took the text for drops (19.0), 2026.12.08 keeps 28.1
TEXT_PSNR = 25.0


def _psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def _offline() -> list[str]:
    """A command prefix that cuts the network off (a fresh network namespace), if allowed here."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
        return ["unshare", "-n"] if ok.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        return []


def test_derain_cli_on_the_sample_clip(tmp_path):
    """The README's main command, with no network where a namespace can cut it: frames and
    timestamps kept, rain visibly removed."""
    out = tmp_path / "sample.derain.mp4"
    cmd = _offline() + [sys.executable, "-m", "streamgan", "derain", str(SAMPLE), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "openvino" in r.stderr  # the CPU default
    src, dst = read_video(SAMPLE), read_video(out)
    assert len(dst["frames"]) == len(src["frames"]) == 100
    assert dst["times"] == pytest.approx(src["times"], abs=1e-3)
    # the clean reference: the same MIT clip, same frames, same size, without the synthetic rain
    clean = []
    with av.open(str(need(CLIPS / "udacity_lanelines_solidWhiteRight.mp4"))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= 100:
                break
            clean.append(f.to_ndarray(format="rgb24", width=640, height=360,
                                      interpolation="BICUBIC"))
    before = np.mean([_psnr(s, c) for s, c in zip(src["frames"], clean)])
    after = np.mean([_psnr(d, c) for d, c in zip(dst["frames"], clean)])
    assert after > before + 3, (before, after)


def _lone(tr):
    """``tr.translate`` for images that are not frames of one video: each starts a temporal model's stream
    over (the benchmark images are scored as lone images, as the card's figures are)."""
    def run(image):
        tr.reset()
        return tr.translate(image)
    return run


def test_derain_rain12_through_the_runtime():
    """Rain12 on the Y channel (protocol of ../shared/data/README.md) with OpenVINO fp32."""
    from streamgan import Translator

    evaluate = pytest.importorskip("trainer.evaluate")
    tr = Translator("derain", backend="openvino", precision="fp32")
    r = evaluate.rain12_scores(_lone(tr), need(DATA / "bench" / "Rain12"))
    assert r["n"] == 12
    assert r["input_psnr"] == pytest.approx(30.14, abs=0.01)
    assert r["psnr"] >= 32.14  # 2 dB above doing nothing


def test_derain_int8_runs_the_cards_int8_model_and_scores_what_the_card_says(caplog, tmp_path):
    """`--precision int8` runs the card's int8 IR (not fp32) and scores Rain12 as the card's int8 section
    says (0.05 dB for the runtime's uint8 rounding); within the gate (0.1 dB of fp32, plus the same 0.05)
    where the card says it passed, and with a notice where it did not. Where the card names no int8 model
    (a temporal derain), `--precision int8` is a model error naming the plugin's model, exit 5, no output."""
    from streamgan import Translator, plugins

    evaluate = pytest.importorskip("trainer.evaluate")
    card = plugins.load("derain").card
    if card.int8 is None:
        out = tmp_path / "never-written.mp4"
        r = run_cli("derain", str(SAMPLE), "-o", str(out), "--precision", "int8")
        assert r.returncode == 5 and "has no int8 version" in r.stderr and "model.onnx" in r.stderr, r.stderr
        assert not out.exists()
        return
    with caplog.at_level("WARNING"):
        int8 = Translator("derain", backend="openvino", precision="int8")
    assert "int8" in int8.describe()
    assert ("did not pass its quality gate" in caplog.text) != card.int8.passed
    fp32 = Translator("derain", backend="openvino", precision="fp32")
    bench = need(DATA / "bench" / "Rain12")
    a, b = (evaluate.rain12_scores(_lone(t), bench)["psnr"] for t in (int8, fp32))
    assert a == pytest.approx(card.int8.metrics["int8"]["rain12_psnr_y"], abs=0.05)
    if card.int8.passed:
        assert a >= b - 0.15, (a, b)
    assert a != b  # a different engine ran


def test_models_lists_the_shipped_plugins_with_version_and_int8_state():
    from streamgan import plugins

    r = run_cli("models")
    assert r.returncode == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("derain "))
    assert "BROKEN" not in line
    card = plugins.load("derain").card
    assert f"version {card.version};" in line
    assert ("int8 model: passed" in line) == bool(card.int8 and card.int8.passed)
    assert ("int8 model: did not pass" in line) == bool(card.int8 and not card.int8.passed)


def _paired(name: str, tr) -> tuple[float, float]:
    """Mean Y-PSNR of a paired bench set (input, runtime output) against its clean side."""
    evaluate = pytest.importorskip("trainer.evaluate")
    r = evaluate.rain12_scores(_lone(tr), need(DATA / "bench" / name))
    return r["input_psnr"], r["psnr"]


def test_derain_real_drops_through_the_runtime():
    """Real drops on glass and on a lens (evaluation-only sets): the shipped model does not remove them yet
    (see its card), but it must not make the picture worse either (within 0.1 dB of the input)."""
    from streamgan import Translator

    tr = Translator("derain", backend="openvino", precision="fp32")
    for name in ("RaindropGlass", "RobotCarDrops"):
        before, after = _paired(name, tr)
        assert after > before - 0.1, (name, before, after)


def test_derain_leaves_clean_hd_frames_as_they_are():
    """A derain filter left on in a surveillance pipeline does no harm on dry frames: clean 1280x720
    frames come back >= 40 dB (Y-PSNR) from themselves at the card's default policy, as lone images and,
    for a temporal derain, as the video they come from (one stream, every frame in order, counted from
    the fifth frame, where its drop fill is fully on)."""
    metrics = pytest.importorskip("trainer.metrics")
    from streamgan import Translator

    tr = Translator("derain", backend="openvino", precision="fp32")
    assert tr.model.processing.policy == "source"
    video = read_video(need(CLIPS / "udacity_vehdet_test_video.mp4"))["frames"]
    assert video[0].shape == (720, 1280, 3)
    lone = []
    for f in video[::6]:
        tr.reset()
        lone.append(metrics.psnr_y(tr.translate(f), f))
    assert np.mean(lone) >= 40.0, lone
    tr.reset()
    stream = [metrics.psnr_y(o, f) for o, f in zip(tr.translate(np.stack(video)), video)][4:]
    assert np.mean(stream) >= 40.0, stream


def test_derain_keeps_a_burnt_in_timestamp_and_speed():
    """Dashcams burn the date, time and speed into their frames. Such text stays where it is while the
    scene moves, as a drop on the glass does; the temporal derain must leave it readable all the same, in
    a dry clip's every frame (Y-PSNR of the text's band to the input, each frame from the fifth, where the
    drop fill is fully on), not fill it from around as if it were water."""
    from PIL import Image, ImageDraw, ImageFont

    from streamgan import Translator

    video = read_video(need(CLIPS / "udacity_lanelines_solidWhiteRight.mp4"))["frames"][:24]
    font = ImageFont.load_default(size=18)
    frames = []
    for i, f in enumerate(video):
        img = Image.fromarray(f).resize((640, 360))
        ImageDraw.Draw(img).text((12, 10), f"2026/12/07 23:55:{i // 8:02d}  58 km/h", font=font,
                                 fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
        frames.append(np.asarray(img))
    tr = Translator("derain", backend="openvino", precision="fp32")
    out = tr.translate(np.stack(frames))
    band = np.s_[6:34, 8:330]
    text = [_psnr(o[band], f[band]) for o, f in zip(out, frames)][4:]
    assert min(text) >= TEXT_PSNR, [round(t, 1) for t in text]


def _luma(frames) -> np.ndarray:
    return np.stack(frames).astype(np.float32) @ np.float32([0.299, 0.587, 0.114])


def test_day2night_is_as_dark_as_dashcam_night_by_default_and_bright_on_request():
    """Day frames of the Udacity clip through the shipped day2night: by default (night exposure dashcam) the
    mean luma lies inside real dashcam night's range (the night motorway clip 5.6, BDD100K night stills 30.8:
    the card's night_realism), the sky is near black and the road ahead in the headlights is lighter than the
    verges beside it; --night-exposure bright is the gained-up look, about twice as bright."""
    from streamgan.translator import Translator

    with av.open(str(need(CLIPS / "udacity_lanelines_solidWhiteRight.mp4"))) as c:
        day = [f.to_ndarray(format="rgb24", width=640, height=360)
               for i, f in zip(range(40), c.decode(video=0)) if i % 10 == 0]
    dash = Translator("day2night", "openvino")
    assert dash.model.exposure == "dashcam"
    night = _luma(list(dash.translate(np.stack(day))))
    bright = _luma(list(Translator("day2night", "openvino", night_exposure="bright").translate(np.stack(day))))
    assert 5.6 < night.mean() < 30.8, night.mean()
    assert bright.mean() > 1.6 * night.mean()
    assert night[:, :90].mean() < 8  # the sky (the clip's top quarter)
    ahead, verge = night[:, 300:360, 250:390].mean(), night[:, 300:360, :80].mean()
    assert ahead > 2.2 * verge, (ahead, verge)  # bright: 1.5
