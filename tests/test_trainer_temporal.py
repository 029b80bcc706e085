"""The temporal derain model's pieces: rain clips, the fixed state, training and resuming, the exported
plugin through the runtime, and the drop-area measure."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import DATA, need  # noqa: E402
from trainer.networks import TEMPORAL_EXTRA, TEMPORAL_STATE, MobileGenerator, TemporalDerain, temporal_features  # noqa: E402
from trainer.rain import move_still, rain_clip  # noqa: E402


def _scene(h=96, w=160, seed=0) -> torch.Tensor:
    """A textured still (1x3xHxW in [0, 1]): moving it shows motion everywhere."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def test_a_moved_still_starts_as_the_still_and_then_moves():
    img = _scene()
    seq = move_still(img, 6, torch.Generator().manual_seed(1))
    assert seq.shape == (6, 3, 96, 160)
    assert torch.allclose(seq[0], img[0], atol=1e-4)
    assert float((seq[5] - img[0]).abs().mean()) > 0.01


def test_drops_stay_on_the_glass_while_the_scene_moves():
    """The places rain changes are the same in the first and the last frame (drops are where they were),
    though the scene behind them moved."""
    seq = move_still(_scene(), 8, torch.Generator().manual_seed(2))
    rainy, clean = rain_clip(seq, torch.Generator().manual_seed(3), p_streaks_only=0.0, p_drops=1.0, p_wipe=0.0,
                             p_arrivals=0.0, p_camera=0.0, p_veil=0.0, p_spray=0.0)
    assert torch.equal(clean, seq)
    wet = [((r - c).abs().amax(0) > 0.08) for r, c in zip(rainy, clean)]
    first, last = wet[0], wet[-1]
    assert first.float().mean() > 0.02  # there is rain
    overlap = (first & last).float().sum() / (first | last).float().sum()
    assert overlap > 0.5, float(overlap)
    assert float((clean[0] - clean[-1]).abs().mean()) > 0.01  # and the scene moved


def test_a_wiper_clears_the_drops_for_the_frames_after_it():
    seq = move_still(_scene(seed=4), 6, torch.Generator().manual_seed(5))
    opts = dict(p_streaks_only=0.0, p_drops=1.0, p_arrivals=0.0, p_camera=0.0, p_veil=0.0, p_spray=0.0)
    wet, clean = rain_clip(seq, torch.Generator().manual_seed(6), p_wipe=0.0, **opts)
    wiped, _ = rain_clip(seq, torch.Generator().manual_seed(6), p_wipe=1.0, **opts)
    assert torch.equal(wet[0], wiped[0])  # before the sweep: the same glass
    assert float((wiped[-1] - clean[-1]).abs().mean()) < 0.5 * float((wet[-1] - clean[-1]).abs().mean())


def test_the_state_starts_empty_and_accumulates():
    small = torch.rand(2, 3, 16, 24) * 2 - 1
    state = torch.zeros(2, TEMPORAL_STATE, 16, 24)
    extra, state = temporal_features(small, state)
    assert extra.shape == (2, TEMPORAL_EXTRA, 16, 24)
    assert torch.equal(extra[:, :3], torch.zeros_like(extra[:, :3]))  # no history: the mean is the frame
    assert torch.equal(extra[:, 3:4], torch.zeros_like(extra[:, 3:4]))  # nothing to compare with yet
    moved = small.roll(3, dims=3)
    extra, state = temporal_features(moved, state)
    assert float(extra[:, 3:4].mean()) > 0  # it saw change
    assert float(state[:, 7:8].min()) == pytest.approx(0.5)


def test_a_warm_started_temporal_model_begins_as_the_frame_by_frame_one():
    """The temporal input's convolution starts at zero: before training, the temporal model gives what the
    image-only network gives, whatever its state."""
    kw = dict(ngf=4, n_blocks=1, norm="none", skips=True, residual=True, out_kernel=3)
    base = MobileGenerator(**kw)
    torch.nn.init.normal_(base.outc[1].weight, 0, 0.1)
    tmp = MobileGenerator(**kw, extra_in=TEMPORAL_EXTRA)
    missing, _ = tmp.load_state_dict(base.state_dict(), strict=False)
    assert sorted(missing) == ["inc_extra.bias", "inc_extra.weight"]
    model = TemporalDerain(tmp)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    state = torch.rand(1, TEMPORAL_STATE, 64, 96)
    with torch.no_grad():
        y, _ = model(x, state)
        assert torch.allclose(y, torch.clamp(x + (base(x) - x), -1, 1), atol=1e-5)


def _tiny_opts(tmp_path):
    from trainer.temporal import TemporalOptions

    clip = need(DATA / "clips" / "udacity_lanelines_solidWhiteRight.mp4")
    return TemporalOptions(clips=[str(clip)], sequences=[], stills=[str(need(DATA / "day" / "udacity"))],
                           init="", crop=64, batch=2, frames=(2, 3), steps=4, decay_start=2,
                           generator={"kind": "mobile", "ngf": 4, "n_blocks": 1, "norm": "none", "skips": True,
                                      "residual": True, "out_kernel": 3},
                           checkpoint_every_s=1e9)


def test_training_resumes_and_the_export_runs_as_a_temporal_plugin(tmp_path):
    """Two steps, stop, two more resumed; exported, the plugin loads in the runtime with its temporal card
    and each stream carries its state."""
    from streamgan import Translator
    from trainer.temporal import export, train

    run = tmp_path / "run"
    first = train(run, _tiny_opts(tmp_path), max_steps=2, workers=0)
    assert first["step"] == 2
    second = train(run, resume=True, workers=0)
    assert second["step"] == 4 and second["stopped"] is None
    pdir = export(run, tmp_path / "plugin")
    card = (pdir / "card.yaml").read_text()
    assert "temporal:" in card and "state_out" in card
    tr = Translator(pdir, backend="onnxruntime")
    frames = np.random.default_rng(0).integers(0, 255, (3, 72, 128, 3), dtype=np.uint8)
    a = tr.translate(frames)
    tr.reset()
    b = tr.translate(frames)
    assert np.array_equal(a, b)  # reset: the same frames give the same output again


def test_drop_area_is_near_zero_on_a_clean_clip_and_not_lowered_by_blur():
    """Clean driving scores near zero; synthetic drops that stay on the glass score several times that, and
    a blur of the rainy clip does not bring it down (a model cannot score by blurring)."""
    from trainer import metrics as M
    from trainer.data import read_video
    from trainer.imaging import _gauss_blur

    clean = read_video(need(DATA / "clips" / "udacity_lanelines_solidWhiteRight.mp4"), limit=30)
    t = torch.from_numpy(np.stack(clean)).permute(0, 3, 1, 2).float() / 255
    t = torch.nn.functional.interpolate(t, size=(360, 640), mode="bilinear", align_corners=False)
    rainy, _ = rain_clip(t, torch.Generator().manual_seed(1), p_streaks_only=0.0, p_drops=1.0)
    u8 = lambda x: [(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in x]  # noqa: E731
    d_clean = M.drop_area([f for f in u8(t)])
    d_rain = M.drop_area(u8(rainy))
    d_blur = M.drop_area(u8(_gauss_blur(rainy, 1.5)))
    assert d_clean < 0.02, d_clean
    assert d_rain > 2 * d_clean and d_rain > 0.02, (d_rain, d_clean)
    assert d_blur > 0.8 * d_rain, (d_blur, d_rain)
    assert json.dumps({"clean": d_clean})  # plain floats for the report


def test_adapt_from_a_temporal_plugin_other_than_drop_fill_says_what_it_takes(tmp_path):
    """adapt fine-tunes frame-by-frame plugins and drop-fill temporal ones: another temporal one is refused in
    one line, before any work."""
    import subprocess
    import sys

    from test_temporal import plugin
    from trainer_helpers import make_images

    p = plugin(tmp_path)
    card = (p / "card.yaml").read_text().replace("task: counter", "task: derain")
    (p / "card.yaml").write_text(card + "processing: {policy: source, short_side: 360}\n")
    clear = make_images(tmp_path / "clear", 2)
    r = subprocess.run([sys.executable, "-m", "trainer", "adapt", "--rainy", str(clear), "--clear", str(clear),
                        "--out", str(tmp_path / "fleet"), "--plugin", str(p)], capture_output=True, text=True,
                       timeout=120, env={**__import__("os").environ, "STREAMGAN_RUNS": str(tmp_path / "runs")})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "a temporal model" in r.stderr and "drop-fill" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "fleet").exists() and not (tmp_path / "runs").exists()


def test_running_drops_move_down_the_glass():
    """The running layer alone (the same clip with and without it): it is there and its centre of mass goes
    down from frame to frame."""
    still = _scene(seed=7).expand(6, -1, -1, -1).contiguous()
    opts = dict(p_streaks_only=0.0, p_drops=1.0, p_arrivals=0.0, p_camera=0.0, p_wipe=0.0, p_veil=0.0, p_spray=0.0)
    plain, _ = rain_clip(still, torch.Generator().manual_seed(8), p_running=0.0, **opts)
    run, _ = rain_clip(still, torch.Generator().manual_seed(8), p_running=1.0, **opts)
    layer = (run - plain).abs().sum(1)  # T x H x W
    assert float(layer[0].sum()) > 1.0
    rows = torch.arange(layer.shape[1], dtype=torch.float32).view(1, -1, 1)
    centre = (layer * rows).sum((1, 2)) / layer.sum((1, 2))
    assert float(centre[3]) > float(centre[0]) + 1, centre.tolist()


def test_eval_runners_size_the_state_as_the_plugins_card_says(tmp_path):
    """A temporal plugin whose card runs its network at short side 16: the state the runners feed has that
    size, as the runtime's."""
    import yaml

    from streamgan.card import Processing
    from streamgan.temporal import state_size
    from test_temporal import plugin
    from trainer.evaluate import OnnxRunner, OpenVinoRunner

    p = plugin(tmp_path)
    card = yaml.safe_load((p / "card.yaml").read_text())
    card["processing"] = {"policy": "source", "short_side": 16, "size_multiple": 4}
    (p / "card.yaml").write_text(yaml.safe_dump(card))
    img = np.zeros((32, 48, 3), np.uint8)
    want = state_size(48, 32, Processing(**card["processing"]))
    assert want == (24, 16)
    for runner in (OnnxRunner, OpenVinoRunner):
        _, state = runner(p / "model.onnx")._step(img, None)
        assert state.shape[2:] == (want[1], want[0]), runner


# ------------------------------------------------------------------------------- find and fill the drops
def test_push_pull_keeps_what_it_has_and_fills_a_hole_from_around():
    from trainer.networks import push_pull

    x = torch.zeros(1, 3, 40, 60)
    x[:, :, :, :30], x[:, :, :, 30:] = 0.2, 0.8  # two flat halves
    w = torch.ones(1, 1, 40, 60)
    w[:, :, 15:25, 5:15] = 0  # a hole in the left half
    out = push_pull(x, w)
    assert torch.allclose(out[:, :, :, :4], x[:, :, :, :4], atol=1e-3)  # kept where weight is full
    assert float((out[:, :, 17:23, 7:13] - 0.2).abs().max()) < 0.02  # the hole filled with its side's value
    out = push_pull(x, torch.zeros_like(w))
    assert torch.isfinite(out).all()  # nothing to fill from: no NaN


def test_windshield_drops_are_darker_above_than_below_and_stay_with_the_seed():
    """A windshield drop shows the ground upside down in its upper part: above a bright sky and dark ground,
    the drops darken the upper half of the sky more than they change its lower half's mean."""
    from trainer.rain import windshield_drops

    img = torch.zeros(1, 3, 180, 320)
    img[:, :, :120] = 0.8  # sky
    img[:, :, 120:] = 0.15  # road
    a = windshield_drops(img, torch.Generator().manual_seed(4), density=0.8)
    b = windshield_drops(img, torch.Generator().manual_seed(4), density=0.8)
    assert torch.equal(a, b)
    changed = (a - img).abs().amax(1)[0, :100] > 0.05
    assert 0.05 < float(changed.float().mean()) < 0.8  # drops, not a veil
    assert float(a[:, :, :100].mean()) < 0.8 - 0.02  # darker in the sky (the ground seen in the drops)


def test_the_drop_finder_fills_only_where_it_finds_drops():
    """At its start the finder finds nothing (the output is the generator's, also once the stream has its
    history); with its map (at half the network's size) forced to one region, only that region changes,
    filled from around."""
    from trainer.networks import DROPFILL_STATE, DropFill, DropFinder

    net = MobileGenerator(ngf=4, n_blocks=1, norm="none", skips=True, residual=True, out_kernel=3)
    model = DropFill(net, DropFinder()).eval()
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    state = model.zero_state(1, 64, 96)
    assert state.shape == (1, DROPFILL_STATE, 32, 48)
    with torch.no_grad():
        y, new = model(x, state)
        assert new.shape == state.shape
        assert torch.equal(y, model(x, state)[0]) and float((y - net(x)).abs().max()) < 1e-5  # no history: no fill
        history = state.clone()
        history[:, 7] = 1  # temporal_features' history channel: the stream's fill fully on
        y = model(x, history)[0]
        assert 0 < float((y - net(x)).abs().max()) < 0.05  # sigmoid(-4): 2% of a fill at most
        drops = torch.zeros(1, 1, 32, 48)
        drops[:, :, 10:15, 15:20] = 1  # rows 20-29, columns 30-39 at the network's size
        filled = model.fill(x, drops)
    assert torch.equal(filled[:, :, :18], x[:, :, :18]) and torch.equal(filled[:, :, 32:], x[:, :, 32:])
    inside = (filled - x)[:, :, 21:29, 31:39].abs().mean()
    assert float(inside) > 0.2  # noise in [-1, 1] replaced by a smooth fill


def test_a_drop_fill_run_trains_only_the_finder_and_exports_a_temporal_plugin(tmp_path):
    from streamgan import Translator
    from trainer.temporal import DROPFILL_SYNTH, export, train
    from trainer.train import load_checkpoint

    opts = _tiny_opts(tmp_path)
    opts.kind, opts.synth = "dropfill", dict(DROPFILL_SYNTH)
    run = tmp_path / "run"
    train(run, opts, max_steps=1, workers=0)
    before = load_checkpoint(run / "latest.pt")["nets"]
    res = train(run, resume=True, workers=0)
    after = load_checkpoint(run / "latest.pt")["nets"]
    assert res["step"] == 4 and "bce" in res
    assert all(torch.equal(before["G"][k], after["G"][k]) for k in before["G"])  # the generator kept
    assert any(not torch.equal(before["finder"][k], after["finder"][k]) for k in before["finder"])
    pdir = export(run, tmp_path / "plugin")
    assert "channels: 9" in (pdir / "card.yaml").read_text()
    tr = Translator(pdir, backend="onnxruntime")
    frames = np.random.default_rng(0).integers(0, 255, (3, 72, 128, 3), dtype=np.uint8)
    assert tr.translate(frames).shape == frames.shape


def test_a_drop_fill_plugins_model_and_its_derain_network_alone_come_back_from_its_graph(tmp_path):
    """model_of rebuilds the exported model (it computes what the graph computes, state included), and
    `streamgan-train temporal frame` writes its generator alone as a frame-by-frame plugin that computes
    what that generator computes; a plugin that is not a drop-fill one is refused."""
    import onnxruntime as ort

    from streamgan import Translator
    from trainer.cli import main
    from trainer.networks import SourceResolution
    from trainer.temporal import DROPFILL_SYNTH, export, model_of, train

    opts = _tiny_opts(tmp_path)
    opts.kind, opts.synth, opts.crop = "dropfill", dict(DROPFILL_SYNTH), 48
    train(tmp_path / "run", opts, max_steps=2, workers=0)
    pdir = export(tmp_path / "run", tmp_path / "plugin")
    model = model_of(pdir / "model.onnx")
    x = torch.rand(1, 3, 72, 128) * 2 - 1
    state = model.zero_state(1, 72, 128)
    sess = ort.InferenceSession(str(pdir / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for _ in range(2):
            want, state_want = sess.run(None, {"input": x.numpy(), "state": state.numpy()})
            got, state = model(x, state)
            assert np.abs(got.numpy() - want).max() < 1e-4 and np.abs(state.numpy() - state_want).max() < 1e-4
    assert main(["temporal", "frame", "--plugin", str(pdir), "--plugin-dir", str(tmp_path / "frame")]) == 0
    tr = Translator(tmp_path / "frame", backend="onnxruntime")
    assert tr.model.temporal is None
    frame = np.random.default_rng(1).integers(0, 255, (72, 128, 3), dtype=np.uint8)
    with torch.no_grad():
        t = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1
        ref = ((SourceResolution(model.net, 360)(t)[0].permute(1, 2, 0).numpy() + 1) * 127.5).round()
    assert np.abs(tr.translate(frame).astype(int) - ref.astype(int)).max() <= 1
    assert main(["temporal", "frame", "--plugin", str(tmp_path / "frame"), "--plugin-dir", str(tmp_path / "f2")]) == 2


def test_the_drop_mask_marks_the_drops_on_the_glass_and_not_the_streaks():
    """rain_clip's drop mask: zero for streaks alone; where drops are, it covers what they changed."""
    seq = move_still(_scene(seed=9), 3, torch.Generator().manual_seed(10))
    kw = dict(p_wipe=0.0, p_arrivals=0.0, p_camera=0.0, p_veil=0.0, p_spray=0.0, drop_mask=True)
    rainy, clean, mask = rain_clip(seq, torch.Generator().manual_seed(11), p_streaks_only=1.0, **kw)
    assert float((rainy[-1] - clean[-1]).abs().max()) > 0.05 and float(mask.max()) == 0  # streaks: not drops
    rainy, clean, mask = rain_clip(seq, torch.Generator().manual_seed(11), p_streaks_only=0.0, p_drops=1.0,
                                   p_windshield=1.0, **kw)
    drops = (mask > 0.03).float()
    assert mask.shape == (1, 1, 96, 160) and 0.02 < float(drops.mean()) < 0.9
    changed = ((rainy[-1] - clean[-1]).abs().amax(0) > 0.1).float()
    assert float((changed * (1 - drops[0, 0])).sum()) < 0.5 * float(changed.sum())  # most changes are drops


def test_adapt_fine_tunes_a_drop_fill_plugins_finder_on_the_users_clear_clip(tmp_path):
    """A drop-fill plugin adapted: the new plugin is temporal, loads and runs; the generator's weights are the
    starting plugin's, the finder's changed; the before/after sheet of the user's rainy frames is there."""
    from streamgan import Translator
    from trainer.temporal import DROPFILL_SYNTH, export, train
    from trainer.train import weights_from_onnx
    from trainer_helpers import make_images

    opts = _tiny_opts(tmp_path)
    opts.kind, opts.synth, opts.crop = "dropfill", dict(DROPFILL_SYNTH), 48
    train(tmp_path / "run", opts, max_steps=1, workers=0)
    start = export(tmp_path / "run", tmp_path / "start")
    clear = make_images(tmp_path / "clear", 3)
    rainy = make_images(tmp_path / "rainy", 2)
    import os
    import subprocess
    import sys

    out = tmp_path / "fleet"  # as a user runs it: its own process (the finder's data worker starts and stops with it)
    r = subprocess.run([sys.executable, "-m", "trainer", "adapt", "--rainy", str(rainy), "--clear", str(clear),
                        "--out", str(out), "--plugin", str(start), "--steps", "2"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "STREAMGAN_RUNS": str(tmp_path / "runs")})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "before_after.png").is_file() and "drop finder" in r.stdout + r.stderr
    a, b = weights_from_onnx(start / "model.onnx"), weights_from_onnx(out / "model.onnx")
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("finder."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("finder."))
    frames = np.random.default_rng(1).integers(0, 255, (2, 72, 128, 3), dtype=np.uint8)
    assert Translator(out, backend="onnxruntime").translate(frames).shape == frames.shape


def test_the_finders_batch_norm_folds_into_its_convolutions_and_loads_back():
    from trainer.networks import DropFinder

    f = DropFinder(in_ch=3)
    for _ in range(3):  # some statistics to fold
        f(torch.rand(4, 3, 32, 48))
    f.eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        before = f(x)
        folded = f.fold_()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded(x), before, atol=1e-4)
        again = DropFinder(in_ch=3)
        again.load_folded(folded.state_dict())
        again.train()  # its batch norm keeps fixed statistics: the same map in training mode
        assert torch.allclose(again(x), before, atol=1e-4)


def test_a_burnt_in_overlay_is_on_the_rainy_clip_and_its_target_alike_and_never_a_drop():
    """trainer/overlay.py: a dashcam's date, time or speed, burnt in at one place on every frame of a
    training clip and of its target, its seconds ticking; clip_batch leaves no drop under it, so the drop
    finder learns that text which stays is not water on the glass."""
    from trainer.overlay import stamp
    from trainer.temporal import DROP_NONE, ClipPool, clip_batch, preset

    clip = torch.rand(8, 3, 96, 160, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.4
    (a, b), cover = stamp((clip, clip * 0.5), torch.Generator().manual_seed(2))
    assert a.shape == clip.shape and cover.shape == (1, 1, 96, 160)
    text = cover[0, 0] > 0.5
    assert 0.002 < float(text.float().mean()) < 0.3
    same = (a - b).abs().amax(1) < 0.05  # where the text covers: (nearly) the same pixels in both, which differ
    assert all(int(s.sum()) > 10 for s in same) and bool((cover[0, 0] > 0)[same.any(0)].all())  # by 0.2 elsewhere
    assert torch.equal(a[:, :, ~(cover[0, 0] > 0)], clip[:, :, ~(cover[0, 0] > 0)])  # nothing else touched
    assert any(not torch.equal(a[0], a[k]) for k in range(1, 8))  # the seconds tick
    o = preset("dropfill")
    o.p_overlay, o.batch, o.frames, o.p_single, o.clean_fraction = 1.0, 2, (3, 3), 0.0, 0.5
    pool = ClipPool(o)
    gen, seen = torch.Generator().manual_seed(3), 0
    for _ in range(3):
        rainy, clean, drops = clip_batch(pool, o, gen)
        assert drops.shape == (2, 1, o.crop, o.crop)
        burnt = ((rainy[-1] - clean[-1]).abs().amax(1, keepdim=True) < 1e-3) & (rainy[-1].amin(1, keepdim=True) > 0.9)
        seen += int(burnt.sum())
        assert float((drops * burnt).max()) < DROP_NONE  # light text, the same in both: no drop under it
    assert seen > 20
