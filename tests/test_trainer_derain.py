"""The derain recipe: realistic rain pairs, the unpaired real-rain term, source-resolution export, adapt."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import torch.nn.functional as F  # noqa: E402
from trainer.export import export_onnx  # noqa: E402
from trainer.metrics import psnr_y  # noqa: E402
from trainer.networks import MobileGenerator, SourceResolution  # noqa: E402
from trainer.options import Config  # noqa: E402
from trainer.rain import camera, film, glass_drops, rain_pair, rain_streaks  # noqa: E402
from trainer.train import Trainer  # noqa: E402

from conftest import frame_derain  # noqa: E402
from trainer_helpers import make_images, tiny_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _scene(h=120, w=160):
    """Bright sky over dark road: a flipped view is easy to recognise."""
    x = torch.zeros(1, 3, h, w)
    x[:, :, : h // 2] = 0.9
    x[:, :, h // 2:] = 0.1
    return x


def test_drops_refract_a_flipped_view_of_the_scene():
    x = _scene()
    y = glass_drops(x, torch.Generator().manual_seed(0), density=1.0)
    changed = (y - x).abs().amax(1) > 0.05
    assert 0.05 < float(changed.float().mean()) < 0.95  # drops here and there, not a uniform filter
    # just above the horizon drops show the dark road (the view is flipped through the drop's centre),
    # just below it they show the bright sky
    above, below = changed[0, 48:60], changed[0, 60:72]
    assert float((y[0, :, 48:60].mean(0)[above] < 0.5).float().mean()) > 0.1
    assert float((y[0, :, 60:72].mean(0)[below] > 0.5).float().mean()) > 0.1


def test_drop_density_goes_from_a_few_drops_to_a_covered_windshield():
    x = torch.rand(1, 3, 120, 160, generator=torch.Generator().manual_seed(1))  # texture: every drop shows
    cover = {0.0: [], 1.0: []}
    for d in cover:
        for seed in range(4):
            y = glass_drops(x, torch.Generator().manual_seed(seed), density=d)
            cover[d].append(float(((y - x).abs().amax(1) > 0.05).float().mean()))
    assert max(cover[0.0]) < 0.05 and np.mean(cover[1.0]) > 0.2


def test_near_drops_are_milky_blurred_discs():
    """Far out of focus drops: where they cover the frame, fine texture is washed out and the view is
    brighter; elsewhere the frame is untouched."""
    x = 0.3 * torch.rand(1, 3, 180, 240, generator=torch.Generator().manual_seed(2))  # dark fine texture
    y = glass_drops(x, torch.Generator().manual_seed(3), density=0.8, near=True)
    d = (y - x).mean(1)
    covered, clear = d > 0.1, d.abs() < 1e-6
    assert float(covered.float().mean()) > 0.15 and float(clear.float().mean()) > 0.1
    texture = lambda t: (t - F.avg_pool2d(t, 5, 1, 2, count_include_pad=False)).abs().mean(1)  # noqa: E731
    assert float(texture(y)[covered].mean()) < 0.5 * float(texture(x)[covered].mean())
    pair = rain_pair(x, torch.Generator().manual_seed(4), p_streaks_only=0.0, p_drops=1.0, p_near_drops=1.0)
    assert pair[0].shape == x.shape and pair[1].shape == x.shape


def test_lens_drops_are_large():
    """Drops on the lens itself (RobotCar style) are several times the size of drops on the windshield:
    after eroding what they cover by 15 pixels (a twelfth of the short side) a good part is left, where
    the windshield's drops at the same density leave next to nothing. Same seed, same drops."""
    h, w = 180, 240
    x = 0.3 * torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(2))  # fine texture
    big = lambda m: float((-F.max_pool2d(-m.float()[None, None], 31, 1, 15))[0, 0].mean())  # noqa: E731
    lens, glass = [], []
    for seed in range(4):
        for out, kw in ((lens, {"lens": True}), (glass, {})):
            y = glass_drops(x, torch.Generator().manual_seed(seed), density=0.5, **kw)
            out.append(big(F.avg_pool2d((y - x).abs().mean(1, keepdim=True), 7, 1, 3)[0, 0] > 0.03))
    assert np.mean(lens) > 0.02 and np.mean(glass) < 0.2 * np.mean(lens)
    again = glass_drops(x, torch.Generator().manual_seed(3), density=0.5, lens=True)
    assert torch.equal(again, glass_drops(x, torch.Generator().manual_seed(3), density=0.5, lens=True))
    pair = rain_pair(x, torch.Generator().manual_seed(4), p_streaks_only=0.0, p_drops=1.0, p_lens_drops=1.0)
    assert pair[0].shape == x.shape and pair[1].shape == x.shape


def _drop_cover(rainy, clean):
    """Share of the frame that the rain changed, after an erosion of 5x5 pixels (thin streaks and specks go,
    drops stay)."""
    changed = ((rainy - clean).abs().amax(1, keepdim=True) > 0.02).float()
    return float((-F.max_pool2d(-changed, 5, 1, 2)).mean())


def test_dense_drops_cover_the_glass():
    """``p_dense_drops`` 1: the glass of every rainy frame is covered with drops (a tenth of the frame or
    more), where the default draw leaves several frames with a few drops and specks. Measured on what is
    left of the change after an erosion of 5x5 pixels (thin streaks and specks go, drops stay)."""
    x = 0.3 + 0.4 * torch.rand(1, 3, 240, 320, generator=torch.Generator().manual_seed(1))
    kw = dict(p_streaks_only=0.0, p_drops=1.0, p_veil=0.0, p_spray=0.0, p_wiper=0.0, p_camera=0.0)

    def covered(**extra):
        shares = []
        for seed in range(12):
            shares.append(_drop_cover(*rain_pair(x, torch.Generator().manual_seed(seed), **kw, **extra)))
        return np.array(shares)

    assert covered(p_dense_drops=1.0).min() > 0.1
    assert (covered() < 0.1).sum() >= 3


def test_soft_drops_are_bright_translucent_and_out_of_focus():
    """``soft`` drops (glass a few centimetres before a lens focused on the street, as in the Raindrop
    pictures): they cover part of the frame and show a brightened view of the scene, and their edges are
    soft: over 16 seeds the steepest steps of the change they make (99.9th percentile) are under half of
    what ``dense`` drops (a covered windshield, in focus more often than not) make. Same smooth scene."""
    h, w = 240, 320
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = torch.stack([0.2 + 0.5 * yy, 0.25 + 0.4 * yy, 0.3 + 0.3 * xx])[None]

    def measure(**kw):
        cover, bright, jump = [], [], []
        for seed in range(16):
            d = (glass_drops(x, torch.Generator().manual_seed(seed), density=0.6, **kw) - x).mean(1)[0]
            c = d.abs() > 0.02
            cover.append(float(c.float().mean()))
            bright.append(float(d[c].mean()))
            step = torch.maximum((d[1:, 1:] - d[1:, :-1]).abs(), (d[1:, 1:] - d[:-1, 1:]).abs())
            jump.append(float(step.quantile(0.999)))
        return np.array(cover), np.array(bright), np.median(jump)

    cover, bright, jump = measure(soft=True)
    assert cover.min() > 0.05 and cover.max() < 0.6
    assert bright.min() > 0.03
    assert jump < 0.5 * measure(dense=True)[2]
    with pytest.raises(ValueError, match="one kind"):
        glass_drops(x, torch.Generator().manual_seed(0), soft=True, lens=True)
    # through rain_pair (no veil, spray, wiper or camera): drops on every frame, blobs that survive a 5x5 erosion
    kw = dict(p_streaks_only=0.0, p_drops=1.0, p_soft_drops=1.0, p_veil=0.0, p_spray=0.0, p_wiper=0.0, p_camera=0.0)
    for seed in range(4):
        assert _drop_cover(*rain_pair(x, torch.Generator().manual_seed(seed), **kw)) > 0.02


def _u8(t):
    return (t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def test_rain_weight_makes_drops_left_on_the_glass_count(tmp_path):
    """Drops cover a small share of the frame: with plain L1 a network that leaves them loses little.
    loss.l1_rain_weight puts weight where input and target differ (the rain), none on the clean rest."""
    from trainer.losses import l1_emphasis, paired_l1

    clean = torch.rand(1, 3, 120, 160, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.4
    rainy = glass_drops(clean, torch.Generator().manual_seed(0), density=0.3)
    s = lambda t: 2 * t - 1  # noqa: E731 - losses take [-1, 1]
    w = l1_emphasis(s(clean), None, 0.0, 0.0, s(rainy), rain=4.0)
    diff = (rainy - clean).abs().amax(1, keepdim=True)
    wet, dry = diff >= 0.05, diff < 0.01
    assert 0.01 < float(wet.float().mean()) < 0.5 and float(dry.float().mean()) > 0.5
    assert float(w[dry].max()) == pytest.approx(1.0) and float(w[wet].min()) == pytest.approx(5.0)
    left = s(rainy)  # an output that leaves every drop where it was
    plain, weighted = float(paired_l1(left, s(clean))), float(paired_l1(left, s(clean), w))
    assert weighted > 2 * plain, (weighted, plain)
    tr = Trainer(Config.model_validate(tiny_config(tmp_path, loss__l1_rain_weight=4.0)))
    torch.testing.assert_close(tr._l1_weight(s(rainy), s(clean)), w)


def test_rain_pair_target_went_through_the_same_camera():
    """The camera (noise, JPEG) is on both sides of the pair: the model is not taught to denoise."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing="ij")
    x = torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.2 * torch.sin(xx * 12)])[None]  # a smooth scene
    gen = torch.Generator().manual_seed(5)
    y, params = camera(x, gen)
    y2, _ = camera(x, gen, params)
    assert torch.equal(y, y2)  # same parameters, same noise sample -> same picture
    seen_camera = False
    for seed in range(12):
        rainy, target = rain_pair(x, torch.Generator().manual_seed(seed), p_streaks_only=0.0, p_camera=1.0)
        assert rainy.shape == target.shape == x.shape
        assert not torch.equal(rainy, target)
        seen_camera |= not torch.equal(target, x)
        # the target is the clean frame through a camera, nowhere near the rainy one
        assert psnr_y(_u8(target), _u8(x)) > 28
    assert seen_camera


def test_source_resolution_keeps_full_resolution_detail(tmp_path):
    """A residual net wrapped to run at short side 32 returns a detailed frame untouched when it makes no
    correction, and applies a correction it makes at full size; the ONNX graph has dynamic sizes."""
    net = MobileGenerator(4, 1, norm="none", residual=True).eval()  # starts as the identity
    wrapped = SourceResolution(net, 32).eval()
    path = export_onnx(wrapped, tmp_path / "m.onnx", sample_hw=(64, 96))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()  # pure detail
    y = sess.run(None, {"input": x})[0]
    assert y.shape == x.shape and float(np.abs(y - x).max()) < 1e-5
    # a net that brightens everything by 0.2 (bias of the last layer) brightens the full-size frame by 0.2
    torch.nn.init.constant_(net.outc[1].bias, 0.2)
    path = export_onnx(SourceResolution(net, 32).eval(), tmp_path / "b.onnx", sample_hw=(64, 96))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 72, 200), np.float32)
    y = sess.run(None, {"input": x})[0]
    assert y.shape == x.shape and np.allclose(y, 0.2, atol=1e-4)


def test_wet_glass_film_lowers_contrast_and_lifts_the_shadows():
    """The film of water on the glass veils the view: less contrast, dark places lifted, the bright sky not
    brightened much; the frame's structure stays (the same edges, only weaker)."""
    x = torch.zeros(1, 3, 120, 200)
    x[:, :, :50] = 0.9  # bright sky
    x[:, :, 50:, ::20] = 0.6  # posts on a dark road
    lows, stds = [], []
    for s in range(6):
        y = film(x, torch.Generator().manual_seed(s))
        assert y.shape == x.shape
        stds.append(float(y.std() / x.std()))
        lows.append(float(y[:, :, 80:, 5:15].mean()))  # the road between two posts, 0 before
        assert float(y[:, :, :40].mean()) < 0.95  # the sky (0.9) at most a little brighter
        assert float((y[:, :, 100, 20] - y[:, :, 100, 25]).mean()) > 0  # a post still stands out
    assert max(stds) < 0.99 and np.mean(stds) < 0.93 and min(stds) > 0.5
    assert min(lows) > 0.01


@pytest.mark.parametrize("size", [(320, 480), (96, 96)])
def test_fine_streaks_are_thinner_and_fainter_not_more(size):
    """The same rain (same parameters) rendered 1.8 times larger and shrunk to the frame: its brightest
    streak pixels are fainter and fewer pixels carry a visible streak; as many streaks, as long, each 1.8
    times thinner, so about 1/1.8 of the light (not more rain, not less), small frames too."""
    def stats(fine):
        r = torch.cat([rain_streaks(*size, torch.Generator().manual_seed(s), fine=fine,
                                    noise_gen=torch.Generator().manual_seed(100 + s)) for s in range(8)])
        return float(r.mean()), float(torch.quantile(r.flatten()[::7], 0.99)), float((r > 0.08).float().mean())
    (m1, p1, v1), (m2, p2, v2) = stats(1.0), stats(1.8)
    assert p2 < 0.8 * p1 and v2 < 0.8 * v1
    assert 0.75 / 1.8 < m2 / m1 < 1.25 / 1.8


def test_real_rain_term_trains_on_unpaired_frames(tmp_path):
    real = make_images(tmp_path / "real", 2, seed=9)
    cfg = Config.model_validate(tiny_config(tmp_path, data__train_real=[str(real)], loss__lambda_real_gan=0.1,
                                            loss__real_gan_start=3, optim__steps=6))
    tr = Trainer(cfg)
    assert tr.counts["train_real"] == 2 and tr.use_gan
    logs = [tr.train_step() for _ in range(6)]
    assert "real_gan" not in logs[0] and "D" not in logs[0]  # paired warm-up first
    assert all("real_gan" in lg and "D" in lg for lg in logs[3:])
    grid = tr.write_samples()
    from PIL import Image

    assert Image.open(grid).height == 5 * 32  # input, output, target, real rainy, its output


def test_real_rain_term_needs_real_frames(tmp_path):
    from trainer.options import ConfigError

    from trainer_helpers import write_config

    p = write_config(tmp_path, tiny_config(tmp_path, loss__lambda_real_gan=0.1))
    with pytest.raises(ConfigError, match="train_real"):
        Config.load(p)


def _adapt(*args, runs, timeout=600, cwd=REPO):
    env = {**os.environ, "STREAMGAN_RUNS": str(runs)}  # the training run stays in the test's folder
    return subprocess.run([sys.executable, "-m", "trainer", "adapt", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_adapt_bad_inputs_name_the_path_and_write_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    clear = make_images(tmp_path / "clear", 2)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "plugin"
    r = _adapt("--rainy", empty, "--clear", clear, "--out", out, runs=tmp_path / "runs")
    assert r.returncode == 2 and str(empty) in r.stderr and "no images or videos" in r.stderr
    r = _adapt("--rainy", bad, "--clear", clear, "--out", out, runs=tmp_path / "runs")
    assert r.returncode == 2 and str(bad) in r.stderr and "cannot decode" in r.stderr
    r = _adapt("--rainy", clear, "--out", out, runs=tmp_path / "runs")
    assert r.returncode == 2 and "--clear" in r.stderr
    r = _adapt("--rainy", clear, "--clear", clear, "--out", tmp_path / "no" / "plugin", runs=tmp_path / "runs")
    assert r.returncode == 2 and f"{tmp_path / 'no'} does not exist" in r.stderr and not (tmp_path / "no").exists()
    assert not out.exists() and not list(tmp_path.glob(".plugin*"))


def test_adapt_writes_a_plugin_that_runs(tmp_path, udacity_clip):
    """From a real clip (rainy side) and images of another size (clear side) to a plugin the CLI runs, run
    from outside the repository: the public benchmark (Rain12, found from the repository root) is scored for
    the card, and the card names the user's frames as its training data."""
    clear = make_images(tmp_path / "clear", 3, w=120, h=90)
    out = tmp_path / "fleet"
    r = _adapt("--rainy", udacity_clip, "--clear", clear, "--out", out, "--steps", 2, "--plugin", frame_derain(),
               "--set", "data.batch_size=2", "--set", "data.crop=64", "--set", "data.video_stride=40",
               "--set", "eval.paired_sets={}", runs=tmp_path / "runs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("{"), r.stdout[:1000]  # stdout is the JSON result alone
    rep = json.loads(r.stdout)
    assert rep["plugin_dir"] == str(out)
    assert {"model.onnx", "card.yaml", "before_after.png"} <= {p.name for p in out.iterdir()}
    from streamgan.plugins import load

    model = load(out)
    assert model.card.task == "derain" and model.processing.policy == "source"
    assert model.card.metrics["rain12_psnr_y"] > 30  # scored (do-nothing is 30.14), not silently skipped
    data = model.card.training.data
    assert (data[0].path, data[0].count, data[1].path) == (str(clear), 3, str(udacity_clip)) and data[1].count > 0
    assert "derain" in data[2].name and model.card.limitations.startswith("Fine-tuned by streamgan-train adapt for 2 steps")
    # no int8 model unless asked (the runtime then runs bf16/fp32), and nothing of NNCF's on the terminal
    assert model.card.int8 is None and not list(out.glob("model.int8.*")) and rep["int8"] is None
    assert ":nncf:" not in r.stderr and "Statistics collection" not in r.stderr
    # how long each phase took, one line each
    for phase in ("training", "export", "evaluation"):
        assert len(re.findall(rf"^adapt: {phase} \d+\.\d s", r.stderr, re.M)) == 1, (phase, r.stderr[-2000:])
    assert len(re.findall(r"^adapt: int8 quantisation skipped .*--int8", r.stderr, re.M)) == 1, r.stderr[-2000:]
    # the folder works as a task for the CLI
    clip = tmp_path / "in.mp4"
    from conftest import make_clip, read_video

    make_clip(clip, frames=4, size=(96, 64))
    res = subprocess.run([sys.executable, "-m", "streamgan", "run", "--task", str(out), str(clip), "-o",
                          str(tmp_path / "o.mp4"), "-q"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len(read_video(tmp_path / "o.mp4")["frames"]) == 4


def _paired_set(folder: Path, n: int = 2) -> Path:
    """A stand-in for Rain12: rainy/*.png beside clean/*.png of the same names."""
    make_images(folder / "clean", n, w=96, h=64)
    make_images(folder / "rainy", n, w=96, h=64, seed=5)
    return folder


def test_adapt_int8_needs_a_benchmark_to_gate_it(tmp_path):
    """--int8 without a paired benchmark on the machine: one line saying so, before any training."""
    rainy, clear = make_images(tmp_path / "rainy", 2, seed=3), make_images(tmp_path / "clear", 2)
    out, runs = tmp_path / "fleet", tmp_path / "runs"
    r = _adapt("--rainy", rainy, "--clear", clear, "--out", out, "--steps", 1, "--int8", "--plugin", frame_derain(),
               "--set", f"eval.rain12={tmp_path / 'no_rain12'}", runs=runs, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "--int8" in err[0] and "Rain12" in err[0] and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not out.exists() and not runs.exists()


def test_adapt_int8_writes_a_gated_int8_model_quietly(tmp_path, udacity_clip):
    """Asked for, the int8 model is made (with its gate against fp32 on the paired benchmark), named in
    the card and in the result at its final place, timed on its own line, and NNCF's lines stay off the
    terminal."""
    clear = make_images(tmp_path / "clear", 3, w=120, h=90)
    out = tmp_path / "fleet"
    r = _adapt("--rainy", udacity_clip, "--clear", clear, "--out", out, "--steps", 1, "--int8",
               "--plugin", frame_derain(), "--set", "data.batch_size=2", "--set", "data.crop=64",
               "--set", "data.video_stride=40",
               "--set", f"eval.rain12={_paired_set(tmp_path / 'r12')}", "--set", "eval.paired_sets={}",
               runs=tmp_path / "runs")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    from streamgan.plugins import load

    card = load(out).card  # the plugin loads: the int8 files match their card
    assert card.int8 is not None and (out / card.int8.file).is_file() and (out / card.int8.weights_file).is_file()
    assert card.int8.of_sha256 == card.weights.sha256 and "rain12_psnr_y" in card.int8.metrics["fp32"]
    assert rep["int8"]["int8"] == str(out / "model.int8.xml") and rep["int8"]["plugin_dir"] == str(out)
    assert len(re.findall(r"^adapt: int8 quantisation \d+\.\d s", r.stderr, re.M)) == 1, r.stderr[-2000:]
    assert ":nncf:" not in r.stderr and "Statistics collection" not in r.stderr
    assert not list(tmp_path.glob(".fleet*"))


def test_adapt_stopped_by_sigterm_writes_no_plugin(tmp_path):
    """SIGTERM during adapt's training: exit 143 with the run's checkpoint, and no plugin (half-trained) and
    no staging folder left."""
    import signal

    from conftest import wait_for

    rainy, clear = make_images(tmp_path / "rainy", 2, seed=3), make_images(tmp_path / "clear", 2)
    out, runs = tmp_path / "fleet", tmp_path / "runs"
    cmd = [sys.executable, "-m", "trainer", "adapt", "--rainy", str(rainy), "--clear", str(clear), "--out", str(out),
           "--steps", "100000", "--plugin", str(frame_derain()), "--set", "data.batch_size=2", "--set", "data.crop=64",
           "--set", "train.log_every=1", "--set", "data.workers=0"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "STREAMGAN_RUNS": str(runs)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        logged = wait_for(lambda: proc.poll() is not None or bool(list(runs.glob("*/log.csv"))), 180)
        assert proc.poll() is None, proc.communicate()
        assert logged, "adapt logged no step in 180 s"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "no plugin written" in err
    assert not out.exists() and not list(tmp_path.glob(".fleet*"))
    assert list(runs.glob("*/latest.pt"))
