"""Day-to-night recipe: night-pool checks, exposure normalisation, relighting at source resolution, and an
export that never replaces a plugin with a worse model."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from trainer.data import normalise_exposure  # noqa: E402
from trainer.export import ExportRefused, export_onnx, export_plugin  # noqa: E402
from trainer.networks import SourceResolution  # noqa: E402
from trainer.options import Config, DataError  # noqa: E402
from trainer.imaging import srgb_to_linear  # noqa: E402
from trainer.synth import make_night  # noqa: E402
from trainer.train import Trainer, save_checkpoint  # noqa: E402

from trainer_helpers import make_images, tiny_config  # noqa: E402


def _save(folder: Path, arrays):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"f{i}.png")
    return folder


def _night(h=48, w=64, level=20):
    a = np.full((h, w, 3), level, np.uint8)
    a[20:24, 30:34] = 255  # a lamp
    return a


def _day(h=48, w=64):
    a = np.full((h, w, 3), 90, np.uint8)
    a[: h // 3] = (170, 200, 235)  # a daylit sky
    return a


def test_bright_night_frames_are_darkened_and_lamps_kept():
    bright = torch.from_numpy(_night(level=150)).permute(2, 0, 1).contiguous()
    out = normalise_exposure(bright, 0.012)
    lum = srgb_to_linear(out.float() / 255).mean(0)
    assert abs(float(lum.median()) - 0.012) < 0.004
    assert int(out[:, 21, 31].min()) >= 250  # the lamp is still at full brightness
    dark = torch.from_numpy(_night(level=15)).permute(2, 0, 1).contiguous()
    assert torch.equal(normalise_exposure(dark, 0.012), dark)  # already night: untouched


def test_day_frames_in_the_night_pool_are_counted(tmp_path, capsys):
    night = _save(tmp_path / "night", [_night(), _day(), _day()])
    cfg = Config.model_validate(tiny_config(tmp_path, mode="cyclegan", task="day2night", data__synth="night",
                                            data__train_b=[str(night)], loss__lambda_gan=0.5))
    Trainer(cfg)
    err = capsys.readouterr().err
    assert "2 of 3 night frames look like day" in err


def test_an_empty_night_pool_stops(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = Config.model_validate(tiny_config(tmp_path, mode="cyclegan", task="day2night", data__synth="night",
                                            data__train_b=[str(tmp_path / "empty")]))
    with pytest.raises(DataError, match="holds no images"):
        Trainer(cfg)


def _street(h=180, w=320):
    """A day street: sky, a light wall under a dark roof edge with two window panes, a lamp pole against
    the sky, a grey car with two tail lights on the road."""
    a = np.full((h, w, 3), 95, np.uint8)
    a[: h // 3] = (175, 200, 230)  # daylit sky
    a[h // 3: h // 2, 180:] = (200, 198, 195)  # a light wall
    a[h // 3: h // 3 + 4, 180:] = (70, 60, 55)  # its roof edge against the sky
    a[70:78, 200:208] = a[70:78, 230:238] = (60, 62, 66)  # its window panes
    a[20: h // 2, 60:62] = (60, 60, 60)  # a lamp pole, its top at row 20
    a[110:135, 120:170] = (150, 150, 152)  # a car
    a[118:122, 124:129] = a[118:122, 161:166] = (210, 40, 35)  # its tail lights
    return a


def test_night_synth_lights_what_the_day_frame_has_and_nothing_else():
    """Lights go where the day frame shows lamps, tail lights and windows (a network can learn that),
    the sky goes dark, and plain wall, road and car body stay dark."""
    day = torch.from_numpy(_street()).permute(2, 0, 1)[None].float() / 255
    for seed in range(4):
        n = make_night(day, torch.Generator().manual_seed(seed))[0]
        lum = n.mean(0)
        assert float(lum[:50].mean()) < 0.15  # the sky is dark
        dark = max(float(lum[95:105, 250:300].mean()), float(lum[150:, 250:].mean()), float(lum[125:132, 135:155].mean()))
        assert dark < 0.35  # wall below the windows, road, car body (lit a little by the tail lights' halo)
        tail = n[:, 118:122, 124:129].mean((1, 2))
        assert float(tail.min()) > dark + 0.5  # lit: its core over-exposed to white, as night cameras record it
        halo = n[:, 112:116, 122:131].mean((1, 2))  # just above it
        assert float(halo[0]) > 1.3 * float(halo[1]) and float(halo[0]) > float(lum[150:, 250:].mean()) + 0.1  # a red glow
        assert float(lum[14:24, 56:66].amax()) > dark + 0.5  # the lamp head
        assert float(lum[70:78, 200:208].mean()) > float(lum[60:66, 212:226].mean()) + 0.02  # a lit window


class _Halve(torch.nn.Module):
    """A relighting 'generator': half the brightness ([-1, 1] range), smooth output."""

    def forward(self, x):
        return 0.5 * (x + 1) - 1


def test_relit_output_keeps_full_resolution_detail_darkened_with_the_scene(tmp_path):
    """Policy 'source' for a generator that relights: the output at full size is the network's result plus
    the frame's own detail, scaled by the local gain (a halved scene keeps its detail at about half)."""
    wrapped = SourceResolution(_Halve(), 16, gain=True).eval()
    path = export_onnx(wrapped, tmp_path / "g.onnx", sample_hw=(48, 64))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(0)) * 0.4 - 0.2).numpy()  # detail
    y = sess.run(None, {"input": x})[0]
    assert y.shape == x.shape
    assert abs(float(y.mean()) - (0.5 * (x.mean() + 1) - 1)) < 0.02  # darkened like the network's output
    ratio = float(y.std() / x.std())
    assert 0.45 < ratio < 0.65  # the detail is there, at about the network's gain (0.55 with eps 0.1)
    assert np.corrcoef(y.ravel(), x.ravel())[0, 1] > 0.95


def test_export_refuses_a_worse_model_unless_forced(tmp_path):
    held = make_images(tmp_path / "held", 2, seed=4)
    cfg = Config.model_validate(tiny_config(tmp_path, data__holdout_a=[str(held)], eval__size=[64, 48],
                                            eval__synthetic_pairs=2, optim__steps=30))
    Trainer(cfg).run()
    export_plugin(cfg, "cfg.yaml")
    plugin = tmp_path / "plugin"
    before = {f.name: f.read_bytes() for f in plugin.iterdir()}
    # a worse model: the trained output layer scrambled
    ck = torch.load(tmp_path / "run" / "latest.pt", weights_only=True)
    for k, v in ck["nets"]["G"].items():
        if k.startswith("outc"):
            ck["nets"]["G"][k] = v + torch.randn_like(v) * 0.05
    save_checkpoint(tmp_path / "bad.pt", ck)
    with pytest.raises(ExportRefused, match="scores worse"):
        export_plugin(cfg, "cfg.yaml", checkpoint=str(tmp_path / "bad.pt"))
    assert {f.name: f.read_bytes() for f in plugin.iterdir()} == before  # untouched, byte for byte
    export_plugin(cfg, "cfg.yaml", checkpoint=str(tmp_path / "bad.pt"), force=True)
    assert (plugin / "model.onnx").read_bytes() != before["model.onnx"]


def test_paired_mode_judges_outputs_against_real_target_frames(tmp_path):
    """Synthetic pairs teach the mapping; the discriminator takes real night frames (data.train_b) as real."""
    night = _save(tmp_path / "night", [np.zeros((48, 64, 3), np.uint8)] * 2)  # black: unlike any synthetic night
    cfg = Config.model_validate(tiny_config(tmp_path, task="day2night", data__synth="night",
                                            data__train_b=[str(night)], loss__lambda_gan=0.5))
    tr = Trainer(cfg)
    assert tr.pool_b is not None and len(tr.pool_b) == 2
    seen = []
    orig = tr.discs.forward

    def spy(b, a=None):
        seen.append(b.detach())
        return orig(b, a)

    tr.discs.forward = spy
    logs = tr.train_step()
    assert {"l1", "G_gan", "D"} <= set(logs)
    # the discriminator's real half is the real night pool (dark frames), not the synthetic targets
    real_half, fake_half = seen[-1][: cfg.data.batch_size], seen[-1][cfg.data.batch_size:]
    assert float(real_half.max()) == -1.0  # [-1, 1]: exactly the black frames above
    assert float(fake_half.max()) > -1.0


def test_structure_term_leaves_the_daylit_sky_free_to_go_dark():
    """With struct_off_sky the structure loss ignores the day frame's sky (clouds may vanish at night)
    and still counts every edge below it."""
    from trainer.losses import STRUCT_REACH, structure_loss
    from trainer.lights import sky_mask

    day = _day(96, 128).copy()
    day[5:15, 20:60] = 250  # a bright cloud in the sky
    day[60:70, 40:80] = 20  # a dark car on the road
    x = torch.from_numpy(day).permute(2, 0, 1)[None].float() / 255
    where = 1 - sky_mask(x, STRUCT_REACH)
    assert float(where[0, 0, :20].mean()) < 0.1 and float(where[0, 0, 60:].mean()) > 0.9
    night_sky = x.clone()
    night_sky[:, :, :32] = 0.02  # flat dark sky, cloud gone
    no_car = x.clone()
    no_car[:, :, 60:70, 40:80] = 90 / 255  # the car gone
    s = lambda t: 2 * t - 1  # noqa: E731 - the loss takes [-1, 1]
    masked, unmasked = (float(structure_loss(s(night_sky), s(x), w)) for w in (where, None))
    print(masked, unmasked, float(structure_loss(s(no_car), s(x), where)))
    assert masked < 0.5 * unmasked  # the unmasked term fights the dark sky; what is left is the horizon
    assert float(structure_loss(s(no_car), s(x), where)) > 2 * masked


def test_l1_emphasis_makes_a_missed_light_and_a_bright_sky_count():
    """A light source covers a few pixels: with plain L1 a network that leaves it out loses almost nothing.
    loss.l1_light_weight / l1_sky_weight make the missed light and a still-bright sky count, and with both
    at 0 the trainer's paired L1 is the plain mean."""
    from trainer.losses import l1_emphasis, paired_l1
    from trainer.lights import sky_mask

    day = torch.from_numpy(_street()).permute(2, 0, 1)[None].float() / 255
    target = make_night(day, torch.Generator().manual_seed(0))
    no_light = target.clone()
    no_light[:, :, 112:126, 120:170] = target[:, :, 140:154, 120:170]  # the tail lights and their glow gone
    bright_sky = target.clone()
    bright_sky[:, :, :40] += 0.1
    s = lambda t: 2 * t - 1  # noqa: E731 - losses take [-1, 1]
    w = l1_emphasis(s(target), sky_mask(day), light=20, sky_weight=2)
    assert float(w.min()) == 1.0
    for miss, factor in ((no_light, 2), (bright_sky, 1.3)):
        plain, weighted = float(paired_l1(s(miss), s(target))), float(paired_l1(s(miss), s(target), w))
        assert weighted > factor * plain, (weighted, plain)
    assert torch.allclose(paired_l1(s(no_light), s(target), torch.ones_like(w)), paired_l1(s(no_light), s(target)))


def test_trainer_uses_the_emphasis_only_when_asked(tmp_path):
    day = _save(tmp_path / "dayframes", [_street()] * 2)
    base = dict(task="day2night", data__synth="night", data__train_a=[str(day)], data__crop=64)
    plain = Trainer(Config.model_validate(tiny_config(tmp_path, **base)))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert plain._l1_weight(x, x) is None
    tr = Trainer(Config.model_validate(tiny_config(tmp_path, **base, loss__l1_light_weight=10.0)))
    w = tr._l1_weight(x, x)
    assert w.shape == (2, 1, 64, 64) and float(w.max()) > 5
    assert {"l1", "struct"} - set(tr.train_step()) == {"struct"}  # runs; no structure term in this config


def _exposed(x: torch.Tensor) -> torch.Tensor:
    """A network's night rendering as the light renderer passes it on off the sky and the lights: exposed
    for night, the road ahead lit by the car's own headlights, its colour faded."""
    from trainer.imaging import linear_to_srgb, srgb_to_linear
    from trainer.lights import NIGHT_COLOUR, NIGHT_EXPOSURE, OWN_HEADLIGHTS, _fade_colour, _headlight_pool

    pool = _headlight_pool(*x.shape[2:])
    lin = srgb_to_linear(x) * NIGHT_EXPOSURE * (1 + OWN_HEADLIGHTS * pool)
    return linear_to_srgb(_fade_colour(lin, NIGHT_COLOUR))


def test_relit_plugin_lights_the_day_frames_lights_and_darkens_its_sky(tmp_path):
    """export.relight: the shipped graph is the generator, then the fixed light renderer. On a day street
    the tail lights and the lamp head glow and the sky goes dark; a frame with no sky and no light source
    (a plain grey road) comes out as the generator made it, at the night exposure. One ONNX graph, any frame
    size."""
    from trainer.export import check_onnx
    from trainer.networks import Relit

    net = SourceResolution(Relit(_Halve()), 360, gain=True).eval()
    day = torch.from_numpy(np.repeat(np.repeat(_street(), 2, 0), 2, 1)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = (net(day * 2 - 1) + 1) / 2
        halved = _exposed((_Halve()(day * 2 - 1) + 1) / 2)
    lum, base = out[0].mean(0), halved[0].mean(0)
    assert float(lum[:100].mean()) < 0.2 < float(base[:100].mean())  # the sky
    tail = (slice(236, 244), slice(248, 258))  # _street's tail light, at twice its size
    assert float(lum[tail].mean()) > float(base[tail].mean()) + 0.3
    assert float(lum[20:50, 110:132].amax()) > float(base[20:50, 110:132].amax()) + 0.3  # the lamp head
    assert abs(float(lum[300:, 400:].mean()) - float(base[300:, 400:].mean())) < 0.05  # road far from any light
    grey = torch.full((1, 3, 180, 320), 0.4)
    with torch.no_grad():
        plain = (net(grey * 2 - 1) + 1) / 2
    assert torch.allclose(plain, _exposed((_Halve()(grey * 2 - 1) + 1) / 2), atol=2e-3)
    onnx = export_onnx(net, tmp_path / "relit.onnx")
    assert check_onnx(net, onnx, shapes=((1, 3, 120, 200), (2, 3, 360, 640)), tol=1e-3) < 1e-3


def test_relight_keeps_yellow_lane_paint_dim_and_leaves_the_road_alone():
    """A relighting network tends to make yellow lane paint glow orange; the renderer brings it back to dim,
    paler paint. White paint and the road around are left as the network made them (at the night exposure,
    in the car's own headlights)."""
    from trainer.imaging import _lin_luma, srgb_to_linear
    from trainer.lights import relight

    day = torch.full((1, 3, 180, 320), 0.42)
    day[:, :, 120:180, 100:106] = torch.tensor([0.85, 0.70, 0.15]).view(1, 3, 1, 1)  # yellow centre line
    day[:, :, 120:180, 220:226] = 0.9  # white edge line
    night = day * 0.15
    night[:, :, 120:180, 100:106] = torch.tensor([0.95, 0.45, 0.05]).view(1, 3, 1, 1)  # glowing orange paint
    night[:, :, 120:180, 220:226] = 0.5
    with torch.no_grad():
        out = relight(day, night)[0]
    yellow, white, road = (slice(140, 170), slice(101, 105)), (slice(140, 170), slice(221, 225)), (slice(140, 170), slice(150, 180))
    lit = _exposed(night)[0]  # as it would be without the paint's dimming (exposed, headlights on)
    light = lambda t: float(_lin_luma(srgb_to_linear(t[(slice(None), *yellow)][None])).mean())  # noqa: E731
    assert light(out) < 0.5 * light(lit)  # dimmed (linear luminance; the glowing paint's red is clipped in sRGB)
    sat = lambda t: float((t.amax(0) - t.amin(0)).mean() / t.amax(0).mean())  # noqa: E731
    assert sat(out[(slice(None), *yellow)]) < sat(night[0][(slice(None), *yellow)]) - 0.1  # paler
    assert float(out[(slice(None), *yellow)].mean()) > float(out[(slice(None), *road)].mean())  # still visible paint
    assert torch.allclose(out[(slice(None), *white)], lit[(slice(None), *white)], atol=0.02)
    assert torch.allclose(out[(slice(None), *road)], lit[(slice(None), *road)], atol=0.02)


class _GlowingPaint(torch.nn.Module):
    """A relighting 'generator' that makes yellow paint glow orange, as the trained one does: the scene at
    0.15 of its brightness, saturated yellow pixels orange and bright."""

    def forward(self, x):
        x = (x + 1) / 2
        yellow = ((x[:, :1] > 0.6) & (x[:, 2:] < 0.3)).float()
        orange = torch.tensor([0.95, 0.45, 0.05]).view(1, 3, 1, 1)
        return 2 * (x * 0.15 * (1 - yellow) + orange * yellow) - 1


def test_relit_dims_yellow_paint_two_pixels_wide_and_keeps_an_amber_tail_lights_glow(monkeypatch):
    """In the shipped graph the renderer runs on a 144x256 grid, where a line two pixels wide at 360x640
    is less than a cell: the paint found there is dimmed to pale yellow pixel by pixel at the frame's size
    (not left a salmon line), the road beside it stays as it was, and an amber tail light (paint's colour,
    paint's place) still glows."""
    from trainer import networks
    from trainer.networks import Relit
    from trainer.imaging import _lin_luma, srgb_to_linear

    day = torch.full((1, 3, 360, 640), 0.42)
    day[:, :, 200:360, 300:302] = torch.tensor([0.85, 0.70, 0.15]).view(1, 3, 1, 1)  # yellow line, 2 px
    car = (slice(None), slice(None), slice(220, 260), slice(420, 520))
    day[car] = 0.55
    day[:, :, 232:238, 430:438] = day[:, :, 232:238, 502:510] = torch.tensor([0.9, 0.6, 0.2]).view(1, 3, 1, 1)
    net = Relit(_GlowingPaint()).eval()
    with torch.no_grad():
        out = (net(day * 2 - 1) + 1)[0] / 2
        plain = (net(torch.where(day[:, :1] > 0.6, 0.42, day) * 2 - 1) + 1)[0] / 2  # no paint, no lights
    line, beside = out[:, 260:340, 300:302], out[:, 260:340, 306:310]
    lit = _exposed((_GlowingPaint()(day * 2 - 1) + 1) / 2)[0][:, 260:340, 300:302]  # glowing, undimmed
    light = lambda t: float(_lin_luma(srgb_to_linear(t)[None]).mean())  # noqa: E731
    assert light(line) < 0.5 * light(lit)
    r, g, b = (float(c.mean()) for c in line)
    assert r > g > b and b < 0.7 * g and g > 0.65 * r  # pale yellow, not salmon or pink
    assert float(line.mean()) > float(beside.mean())  # still visible paint
    assert torch.allclose(beside, plain[:, 260:340, 306:310], atol=0.02)
    tail = (slice(None), slice(232, 238), slice(430, 438))
    assert float(out[tail].mean()) > float(plain[tail].mean()) + 0.3  # lit
    monkeypatch.setattr(networks, "paint_lines", lambda day, light: torch.zeros_like(day[:, :1]))
    with torch.no_grad():
        undimmed = (net(day * 2 - 1) + 1)[0] / 2
    assert float(out[tail].mean()) > 0.9 * float(undimmed[tail].mean())  # and as bright as with no paint dimmed


class _SalmonNight(torch.nn.Module):
    """A relighting 'generator' that casts the whole scene salmon pink, as the trained one does on bright
    concrete and dry grass: a third of the day's brightness, red up and blue down."""

    def forward(self, x):
        return 2 * ((x + 1) / 2 * 0.3 * torch.tensor([1.9, 1.0, 0.8]).view(1, 3, 1, 1)) - 1


def test_relit_turns_salmon_concrete_warm_grey_and_keeps_a_red_car_red(monkeypatch):
    """Grey concrete that the network renders salmon pink comes out no more magenta than the day frame
    showed it, as bright as the network made it; a red car keeps its red."""
    from trainer import networks
    from trainer.networks import Relit
    from trainer.imaging import _lin_luma
    from trainer.lights import no_magenta

    day = torch.full((1, 3, 360, 640), 0.42)
    day[:, :, 240:330, 60:300] = torch.tensor([0.78, 0.76, 0.74]).view(1, 3, 1, 1)  # concrete
    day[:, :, 250:300, 400:520] = torch.tensor([0.70, 0.12, 0.12]).view(1, 3, 1, 1)  # a red car
    with torch.no_grad():
        raw = (_SalmonNight()(day * 2 - 1) + 1) / 2
        fixed = no_magenta(raw, day)
        out = (Relit(_SalmonNight()).eval()(day * 2 - 1) + 1)[0] / 2
    concrete, car = (slice(None), slice(260, 310), slice(100, 260)), (slice(None), slice(260, 290), slice(420, 500))
    tint = lambda t: float(t[1].mean() / ((t[0].mean() + t[2].mean()) / 2))  # noqa: E731
    assert tint(raw[0][concrete]) < 0.8  # the network's salmon
    assert tint(out[concrete]) > 0.9 * tint(day[0][concrete])  # through the shipped graph: warm grey
    r, g, b = (float(c.mean()) for c in out[concrete])
    assert r >= g >= b  # still warm
    assert float(_lin_luma(fixed)[0][concrete].mean()) == pytest.approx(
        float(_lin_luma(raw)[0][concrete].mean()), rel=0.02)  # its Rec. 709-weighted sRGB luma kept
    red = lambda t: float(t[car][0].mean() / t[car][1].mean())  # noqa: E731
    assert red(fixed[0]) > red(day[0])  # red stays red: the bound is the car's own day colour's
    monkeypatch.setattr(networks, "no_magenta", lambda img, day: img)
    with torch.no_grad():
        before = (Relit(_SalmonNight()).eval()(day * 2 - 1) + 1)[0] / 2
    assert red(out) > 0.8 * red(before)
    assert tint(before[concrete]) < 0.87  # the graph without it: still salmon (the renderer fades colour)


def test_relit_keeps_a_small_tail_light_lit_as_the_car_moves():
    """A tail light three pixels wide and two high at 360x640 is found wherever it falls on the renderer's
    144x256 grid: moved a pixel at a time down and across (a car ahead drifting in the frame), it glows in
    every frame, as brightly to within a fifth, and does not blink (found on the grid alone, it was lit in
    none of the six positions)."""
    from trainer.networks import Relit

    net = Relit(_GlowingPaint()).eval()
    peaks = []
    for d in range(6):  # down and across, a pixel at a time
        day = torch.full((1, 3, 360, 640), 0.42)
        day[:, :, 200 + d:240 + d, 400 + d:470 + d] = 0.12  # a dark car
        for x in (404, 460):
            day[:, :, 212 + d:214 + d, x + d:x + d + 3] = torch.tensor([0.7, 0.12, 0.12]).view(1, 3, 1, 1)
        with torch.no_grad():
            out = (net(day * 2 - 1) + 1)[0] / 2
        peaks.append(float(out[:, 205 + d:222 + d, 400 + d:412 + d].amin(0).amax()))  # the left light's core
    assert min(peaks) > 0.8, peaks
    assert min(peaks) > 0.8 * max(peaks), peaks


def test_relight_leaves_wide_yellow_things_alone():
    """Only lines are taken for paint: a wide yellow area (a taxi's side, a sign, dry grass) low in the
    frame keeps the network's rendering."""
    from trainer.lights import relight

    day = torch.full((1, 3, 180, 320), 0.42)
    day[:, :, 110:170, 60:160] = torch.tensor([0.85, 0.70, 0.15]).view(1, 3, 1, 1)  # a yellow taxi's side
    night = day * 0.3
    with torch.no_grad():
        out = relight(day, night)[0]
    inner = (slice(None), slice(125, 155), slice(80, 140))
    assert torch.allclose(out[inner], _exposed(night)[0][inner], atol=0.02)


def _overcast(h: int, w: int) -> torch.Tensor:
    """A grey overcast sky over the top 40% of the frame, lighter towards the horizon and crossed by three
    thin dark wires; a grey road below."""
    day = torch.full((1, 3, h, w), 0.4)
    sky = int(0.4 * h)
    day[:, :, :sky] = torch.linspace(0.72, 0.88, sky).view(1, 1, sky, 1)
    xs = torch.arange(w)
    for k, y0 in enumerate((0.1, 0.2, 0.3)):
        rows = (y0 * h + (xs - w / 2) * (k - 1) * 0.1).round().long().clamp(0, sky - 1)
        day[0, :, rows, xs] = 0.25
    return day


@pytest.mark.parametrize("hw", [(144, 256), (360, 640)])
def test_relight_darkens_a_grey_wire_crossed_sky_at_the_grid_size_and_above(hw):
    """A network that leaves an overcast sky bright: the renderer takes it to night on its 144x256 grid as at
    360x640 (the sky's smoothness is judged per fraction of the frame, not per pixel), and leaves the road."""
    from trainer.imaging import _lin_luma
    from trainer.lights import relight

    h, w = hw
    day = _overcast(h, w)
    night = day * 0.8  # a bright rendering of the sky
    with torch.no_grad():
        out = relight(day, night)[0]
    y = lambda t: float(_lin_luma(t[None]).mean())  # noqa: E731 - Rec. 709 weights on the sRGB values
    assert y(out[:, : int(0.3 * h)]) < 0.2 < y(night[0, :, : int(0.3 * h)])
    road = (slice(None), slice(int(0.7 * h), h), slice(0, w))
    assert torch.allclose(out[road], _exposed(night)[0][road], atol=0.02)


def _washed_out(h=144, w=256) -> torch.Tensor:
    """A washed-out camera's frame (the renderer's 144x256 grid): a light grey overcast sky, a grey road, a
    dark car whose tail lights show only as a dull pure red, a white car with saturated tail lights, the same
    dull red as small flowers in green foliage, and a pole against the sky with a gap of sky in it."""
    d = torch.full((1, 3, h, w), 0.55)
    d[:, :, :40] = 0.85
    dull = torch.tensor([0.56, 0.46, 0.47]).view(1, 3, 1, 1)  # as a washed-out dashcam records a tail light
    d[:, :, 60:82, 40:80] = 0.3  # the dark car
    d[:, :, 66:69, 44:47] = d[:, :, 66:69, 73:76] = dull
    d[:, :, 58:84, 150:200] = 0.92  # the white car
    d[:, :, 64:67, 154:158] = d[:, :, 64:67, 192:196] = torch.tensor([0.8, 0.15, 0.12]).view(1, 3, 1, 1)
    d[:, :, 50:90, 210:250] = torch.tensor([0.25, 0.45, 0.2]).view(1, 3, 1, 1)  # foliage
    d[:, :, 66:69, 228:231] = dull  # red flowers in it
    d[:, :, 5:60, 110:112] = 0.25  # the pole, its top at row 5
    d[:, :, 20:24, 110:112] = 0.85  # a gap in it
    return d


def test_relight_lights_a_washed_out_cameras_dull_tail_lights_but_not_red_flowers():
    """A low-saturation camera records tail lights as a dull pure red: they are lit (a red glow around an
    over-exposed core); the same colour among green foliage is not."""
    from trainer.lights import relight

    day = _washed_out()
    with torch.no_grad():
        out = relight(day, day * 0.3)[0]
    lum = out.mean(0)
    road = float(lum[110:].mean())
    for x in (44, 73):
        assert float(lum[66:69, x:x + 3].mean()) > road + 0.5
    glow = out[:, 61:64, 42:50].mean((1, 2))  # just above the left one
    assert float(glow[0]) > 1.3 * float(glow[1])
    assert float(lum[66:69, 228:231].mean()) < float(lum[55:60, 215:225].mean()) + 0.1  # flowers stay foliage


def test_relight_lights_dull_tail_lights_one_or_two_cells_wide():
    """The car ahead a little way off: on the renderer's grid its tail lights are two cells of a faint dull
    red on a silver body (as the FLIR and DeepTL cameras record them). Both are lit."""
    from trainer.lights import relight

    day = _washed_out()
    day[:, :, 95:112, 85:135] = 0.62  # a silver car
    faint = torch.tensor([0.6, 0.52, 0.5]).view(1, 3, 1, 1)  # red a seventh above green and blue
    day[:, :, 100:102, 89:91] = day[:, :, 100:102, 128:130] = faint
    with torch.no_grad():
        lum = relight(day, day * 0.3)[0].mean(0)
    road = float(lum[120:].mean())
    for x in (89, 128):
        assert float(lum[100:102, x:x + 2].mean()) > road + 0.4


def test_relight_lamp_heads_are_the_tops_of_poles_only():
    """A lamp head is lit at the top of a pole against the sky, not where the pole resumes below a gap (a
    crossing in a lattice tower, a gap between branches)."""
    from trainer.lights import relight

    day = _washed_out()
    with torch.no_grad():
        lum = relight(day, day * 0.3)[0].mean(0)
    assert float(lum[0:8, 106:116].amax()) > 0.8
    assert float(lum[22:30, 106:116].amax()) < 0.3


def test_relight_reflections_do_not_light_up_a_white_car():
    """Wet-road reflections of tail lights scale with how light the ground is only up to a light road's level:
    a white car's body below its own tail lights is not turned into a lamp (at most 0.02 brighter than with
    the tail lights painted over)."""
    from trainer.lights import relight

    day = _washed_out()
    night = day * 0.3
    night[:, :, 58:84, 150:200] = 0.8  # a network's bright rendering of the white car
    off = day.clone()
    off[:, :, 64:67, 154:158] = off[:, :, 64:67, 192:196] = 0.92
    with torch.no_grad():
        lit, unlit = relight(day, night)[0].mean(0), relight(off, night)[0].mean(0)
    assert float(lit[64:67, 154:158].mean()) > 0.9  # its tail lights are on
    assert float(lit[72:84, 160:190].mean()) < float(unlit[72:84, 160:190].mean()) + 0.02


def test_relight_dashcam_exposure_darkens_the_scene_lights_the_road_ahead_and_keeps_the_lights():
    """Night exposure 'dashcam': off the headlight cone the scene is at DASHCAM_GAIN of the 'bright' exposure in
    linear light, the road ahead in the cone is lit above that, and a tail light is as bright as in 'bright'.
    An unknown exposure is refused, naming the ones there are."""
    from trainer.imaging import _lin_luma, srgb_to_linear
    from trainer.lights import DASHCAM_GAIN, relight

    lin = lambda t: float(_lin_luma(srgb_to_linear(t)[None]).mean())  # noqa: E731
    ground = torch.full((1, 3, 144, 256), 0.3)  # asphalt and verges under a night sky: no sky, no lights
    with torch.no_grad():
        bright, dash = (relight(ground, ground * 0.5, exposure=e)[0] for e in ("bright", "dashcam"))
    verge = (slice(None), slice(85, 95), slice(0, 20))  # beside the road, out of the beam
    assert lin(dash[verge]) == pytest.approx(DASHCAM_GAIN * lin(bright[verge]), rel=0.05)
    ahead = (slice(None), slice(125, 144), slice(100, 156))  # the road ahead in the beam
    assert lin(dash[ahead]) > 2.5 * DASHCAM_GAIN * lin(bright[ahead])
    day = _washed_out()
    with torch.no_grad():
        bright, dash = (relight(day, day * 0.3, exposure=e)[0] for e in ("bright", "dashcam"))
    light = (slice(None), slice(64, 67), slice(154, 158))  # the white car's tail light
    assert float(dash[light].mean()) > 0.9 and float(dash[light].mean()) == pytest.approx(
        float(bright[light].mean()), abs=0.03)
    with pytest.raises(ValueError, match="dashcam, bright"):
        relight(day, day * 0.3, exposure="dim")


def test_relit_dashcam_darkens_the_frames_own_detail_with_it():
    """At full size the day frame's detail is darkened with the scene, not added back at day contrast (it would
    stand out as bright noise on a near-black frame)."""
    from trainer.networks import Relit

    torch.manual_seed(0)
    day = (torch.full((1, 3, 288, 512), 0.5) + 0.2 * torch.rand(1, 3, 288, 512)).clamp(0, 1)
    day[:, :, :80] = 0.35  # no sky
    with torch.no_grad():
        b, d = ((Relit(_Halve(), exposure=e).eval()(day * 2 - 1) + 1) / 2 for e in ("bright", "dashcam"))
    def contrast(t):  # the detail (neighbour differences) against the level, out of the beam
        p = t[:, :, 100:180, 0:100]
        return float((p[..., 1:] - p[..., :-1]).abs().mean() / p.mean())

    assert float(d.mean()) < 0.7 * float(b.mean())
    assert contrast(d) < 1.25 * contrast(b)  # added at day contrast it would be about twice as strong


def test_night_exposures_need_the_renderer_and_distinct_names():
    from pydantic import ValidationError

    from trainer.options import ExportOptions

    with pytest.raises(ValidationError, match="set export.relight"):
        ExportOptions(night_exposures=["dashcam"])
    with pytest.raises(ValidationError, match="names one twice"):
        ExportOptions(relight=True, night_exposures=["bright", "bright"])
