"""What a derain plugin does to video, through the streamgan runtime (the backend a user gets by default).

* :func:`windshield` - a real rainy clip through a windshield (evaluation only: never trained or tuned on):
  a before/after video side by side, a contact sheet of 8 frames, :func:`trainer.metrics.drop_area` of the
  input and the output, flicker of both.
* :func:`synthetic_clips` - held-out clips (frames and stills kept out of training) with synthetic rain that
  stays on the glass (:func:`trainer.rain.rain_clip`): Y-PSNR against the clean clip, frame by frame, each
  clip one stream (a temporal model carries its state through it).
* :func:`fps` - end-to-end frames per second of ``streamgan derain`` on a clip, plugins alternated.
* :func:`evaluate` - all of these and the frame-by-frame benchmarks for a temporal derain plugin beside another;
  :func:`export_evaluated` exports a temporal run (:func:`trainer.temporal.export`) with those scores in its card.

    python -m trainer.video_eval PLUGIN [--against plugins/derain] [--out DIR]
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from .data import read_video
from .evaluate import contact_sheet

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WINDSHIELD = DATA / "clips" / "real_rain_windshield.mp4"


def windshield(plugin: str, out_dir: Path, clip: Path = WINDSHIELD, frames: int | None = None) -> dict:
    from streamgan import Translator

    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "windshield_before_after.mp4"
    tr = Translator(plugin)
    tr.translate_video(clip, video, overwrite=True, compare=True, frames=frames)
    both = read_video(video)
    w = both[0].shape[1] // 2
    before, after = [f[:, :w] for f in both], [f[:, w:] for f in both]
    pick = np.linspace(0, len(both) - 1, 8).round().astype(int)
    sheet = contact_sheet([[before[i], after[i]] for i in pick], ["input (real windshield)", "output"],
                          out_dir / "windshield_sheet.png", width=320)
    da_in, da_out = M.drop_area(before), M.drop_area(after)
    fi, fo = M.flicker(before), M.flicker(after)
    return {"clip": str(clip), "frames": len(both), "video": str(video), "sheet": sheet,
            "drop_area_input": round(da_in, 4), "drop_area_output": round(da_out, 4),
            "drop_area_ratio": round(da_out / max(da_in, 1e-9), 3),
            "flicker_input": round(fi, 3), "flicker_output": round(fo, 3), "flicker_ratio": round(fo / max(fi, 1e-9), 3)}


def clean_clip(plugin: str, clip: Path) -> dict:
    """A clean clip: the drop area of input and output (near zero both: nothing invented)."""
    from streamgan import Translator

    frames = [_small(f) for f in read_video(clip)]
    tr = Translator(plugin)
    outs = list(tr.translate(np.stack(frames)))
    return {"clip": str(clip), "frames": len(frames), "drop_area_input": round(M.drop_area(frames), 4),
            "drop_area_output": round(M.drop_area(outs), 4),
            "psnr_y_to_input": round(float(np.mean([M.psnr_y(o, f) for o, f in zip(outs, frames)])), 2)}


def _small(f: np.ndarray, size=(640, 360)) -> np.ndarray:
    t = torch.from_numpy(f).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=size[::-1], mode="bilinear", antialias=True, align_corners=False)
    return t[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()


def _u8(t: torch.Tensor) -> list[np.ndarray]:
    return [(x.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8) for x in t]


def held_out_rain_clips(n: int, length: int, seed: int, synth: dict | None = None) -> list[tuple[list, list]]:
    """``n`` (rainy, clean) clips of ``length`` 360 x 360 windows of held-out 640-wide frames, with rain that
    stays on the glass (``synth``: :func:`trainer.rain.rain_clip`'s options; default the temporal runs' mix)."""
    from .rain import rain_clip
    from .temporal import ClipPool, TemporalOptions

    opts = TemporalOptions(crop=360, scale=(1.0, 1.0))
    pool = ClipPool(opts, held_out=True, max_side=640)
    gen = torch.Generator().manual_seed(seed)
    clips = []
    for _ in range(n):
        clean = pool.sample(length, gen)
        rainy, target = rain_clip(clean, gen, **(synth if synth is not None else opts.synth))
        clips.append((_u8(rainy), _u8(target)))
    return clips


def synthetic_beside_real(path: Path, clip: Path = WINDSHIELD, rows: int = 4, seed: int = 30_000) -> str:
    """A contact sheet: frames of held-out clips with synthetic windshield drops (:data:`DROPFILL_SYNTH`) beside
    frames of the real windshield clip (looking only: the sheet stays outside the repository)."""
    from .temporal import WINDSHIELD_ONLY as synth

    fake = [c[0][-1] for c in held_out_rain_clips(rows, 2, seed, synth)]
    real = read_video(clip)
    real = [real[i] for i in np.linspace(0, len(real) - 1, rows).round().astype(int)]
    crop = lambda f: _small(f)[:, 140:500]  # noqa: E731  (360 x 360 windows, as the synthetic ones)
    return contact_sheet([[f, crop(r)] for f, r in zip(fake, real)], ["synthetic (held-out clips)", "real windshield"],
                         path, width=360)


def synthetic_clips(plugins: dict[str, str], n: int = 12, length: int = 12, seed: int = 20_000,
                    synth: dict | None = None) -> dict:
    """Held-out clips with rain on the glass (:func:`held_out_rain_clips`), each through every plugin as one
    stream."""
    from streamgan import Translator

    clips = held_out_rain_clips(n, length, seed, synth)
    rep: dict = {"clips": n, "frames": length, "size": "360x360 windows of held-out 640-wide frames",
                 "input": _psnr(clips, [c[0] for c in clips])}
    for name, plugin in plugins.items():
        tr = Translator(plugin, precision="fp32")
        outs = [list(tr.translate(np.stack(r), stream=i)) for i, (r, _) in enumerate(clips)]
        rep[name] = _psnr(clips, outs)
    return rep


def synthetic_before_after(plugins: dict[str, str], path: Path, rows: int = 4, frame: int = 7,
                           seed: int = 40_000) -> str:
    """A contact sheet of held-out clips (MIT-licensed frames) with drops on the glass: the ``frame``-th frame
    of each, as input, through each plugin (each clip one stream) and clean."""
    from streamgan import Translator

    from .temporal import WINDSHIELD_ONLY as synth

    clips = held_out_rain_clips(rows, frame + 1, seed, synth)
    outs = {}
    for name, plugin in plugins.items():
        tr = Translator(plugin, precision="fp32")
        outs[name] = [tr.translate(np.stack(r), stream=i)[frame] for i, (r, _) in enumerate(clips)]
    sheet = [[r[frame]] + [outs[k][i] for k in plugins] + [c[frame]] for i, (r, c) in enumerate(clips)]
    return contact_sheet(sheet, ["input (synthetic drops)", *plugins, "clean"], path, width=300)


def _psnr(clips, outs) -> dict:
    every = [M.psnr_y(o, t) for (r, tg), oc in zip(clips, outs) for o, t in zip(oc, tg)]
    later = [M.psnr_y(o, t) for (r, tg), oc in zip(clips, outs) for o, t in list(zip(oc, tg))[4:]]
    return {"psnr_y": round(float(np.mean(every)), 3), "psnr_y_from_frame_5": round(float(np.mean(later)), 3)}


def fps(plugins: dict[str, str], base: str, clip: Path = WINDSHIELD, frames: int = 300, rounds: int = 5) -> dict:
    """End-to-end fps of translate_video (decode, model, encode) per plugin, alternated ``rounds`` times: the
    best of each, every round's figures, and the median over the rounds of each plugin's fps over ``base``'s
    of the same round (a ratio taken side by side; the machine's speed drifts between rounds)."""
    import tempfile

    from streamgan import Translator

    trs = {k: Translator(v) for k, v in plugins.items()}
    runs: dict = {k: [] for k in plugins}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(rounds):
            for k, tr in trs.items():
                t0 = time.perf_counter()
                tr.translate_video(clip, Path(d) / f"{k}.mp4", overwrite=True, frames=frames)
                runs[k].append(frames / (time.perf_counter() - t0))
    ratios = {f"{k}_over_{base}": round(float(np.median([a / b for a, b in zip(runs[k], runs[base])])), 3)
              for k in plugins if k != base}
    return {"clip": str(clip), "frames": frames, **{k: round(max(v), 1) for k, v in runs.items()},
            "rounds": {k: [round(x, 1) for x in v] for k, v in runs.items()}, "median_ratio": ratios}


# ------------------------------------------------------------------------------------------- a temporal plugin
SHIPPED = Path(__file__).resolve().parents[1] / "plugins" / "derain"


def evaluate(plugin_dir: str | Path, out: str | Path, against: str | Path | None = None) -> dict:
    """Score a temporal derain plugin beside another (default: the shipped derain frame by frame, its
    network alone where it is temporal: the model the drop fill is measured against). Frame by frame, on the
    benchmarks (``streamgan-train eval`` with configs/train_derain.yaml: Rain12, RobotCarDrops and
    RaindropGlass raw and colour-aligned, held-out synthetic pairs, clean 720p, flicker); as video
    (this module: the real windshield clip, a clean clip, held-out synthetic rain clips as
    streams, end-to-end fps). The report is also written to ``out``/report.json."""
    from .evaluate import evaluate as frame_eval
    from .options import REPO, Config
    from .temporal import DROPFILL_SYNTH, frame_by_frame

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = Config.load(REPO / "configs" / "train_derain.yaml", [])
    both = {"new": str(plugin_dir), "against": str(against or frame_by_frame(SHIPPED, out / "frame_by_frame"))}
    rep: dict = {"frames": frame_eval(cfg, onnx=str(Path(plugin_dir) / "model.onnx"), out=str(out / "frames"))}
    rep["windshield"] = {k: windshield(v, out / f"windshield_{k}") for k, v in both.items()}
    rep["clean_clip"] = {k: clean_clip(v, DATA / "clips" / "udacity_vehdet_test_video.mp4") for k, v in both.items()}
    rep["synthetic_clips"] = synthetic_clips(both)
    rep["synthetic_windshield_clips"] = synthetic_clips(both, synth=DROPFILL_SYNTH)
    rep["synthetic_beside_real"] = synthetic_beside_real(out / "synthetic_beside_real.png")
    rep["before_after"] = synthetic_before_after({"frame by frame" if against is None else "against": both["against"],
                                                  "this model": both["new"]}, out / "synthetic_before_after.png")
    rep["fps"] = fps(both, base="against")
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    return rep


def card_metrics(rep: dict) -> dict:
    """The card's metrics from an ``evaluate`` report."""
    m = dict(rep["frames"]["card_metrics"])
    w, c, s, f = rep["windshield"]["new"], rep["clean_clip"]["new"], rep["synthetic_clips"], rep["fps"]
    m.update({"real_windshield_drop_area": w["drop_area_output"], "real_windshield_input_drop_area": w["drop_area_input"],
              "real_windshield_flicker_ratio": w["flicker_ratio"], "clean_clip_drop_area": c["drop_area_output"],
              "synthetic_clips_psnr_y": s["new"]["psnr_y"], "synthetic_clips_input_psnr_y": s["input"]["psnr_y"],
              "synthetic_clips_psnr_y_frame_by_frame_model": s["against"]["psnr_y"],
              "end_to_end_fps_vs_frame_by_frame_model": f["median_ratio"]["new_over_against"]})
    return m


def export_evaluated(run: str | Path, plugin_dir: str | Path, scored: bool = True,
                     against: str | Path | None = None) -> dict:
    """Export the run as a plugin and, unless ``scored`` is off, score it (``evaluate``) and put the scores in
    its card."""
    from streamgan.card import ModelCard

    from .temporal import export

    pdir = export(run, plugin_dir)
    if not scored:
        return {"plugin_dir": str(pdir)}
    rep = evaluate(pdir, Path(run).expanduser() / "eval", against)
    shutil.copyfile(rep["before_after"], pdir / "before_after.png")
    card = ModelCard.load(pdir / "card.yaml")
    card.model_copy(update={"metrics": {**card.metrics, **card_metrics(rep)}}).dump(pdir / "card.yaml")
    return {"plugin_dir": str(pdir), "metrics": card_metrics(rep)}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("plugin")
    ap.add_argument("--against", default=None, help="default: the shipped derain, frame by frame")
    ap.add_argument("--out", default="video_eval")
    ap.add_argument("--skip", nargs="*", default=[])
    a = ap.parse_args()
    from .temporal import frame_by_frame

    out = Path(a.out)
    rep: dict = {}
    both = {"new": a.plugin, "shipped": str(a.against or frame_by_frame(SHIPPED, out / "frame_by_frame"))}
    if "windshield" not in a.skip:
        rep["windshield"] = {k: windshield(v, out / k) for k, v in both.items()}
    if "clean" not in a.skip:
        rep["clean"] = {k: clean_clip(v, DATA / "clips" / "udacity_vehdet_test_video.mp4") for k, v in both.items()}
    if "synthetic" not in a.skip:
        rep["synthetic_clips"] = synthetic_clips(both)
    if "fps" not in a.skip:
        rep["fps"] = fps(both, base="shipped")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    print(json.dumps(rep, indent=2))
