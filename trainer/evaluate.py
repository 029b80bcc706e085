"""``streamgan-train eval``: a JSON report and a contact-sheet PNG for one generator.

The generator is run through ONNX Runtime (the exported file, or a temporary export of a checkpoint), so
what is measured is what ships. Deraining: Rain12 and held-out synthetic pairs (Y-channel PSNR/SSIM,
beside the do-nothing row), flicker on a real clip. Day-to-night: night-distribution distance and
structure score beside two baselines (the untouched input and a hand-made darkening filter), flicker.
Both: model-only OpenVINO frames per second at 640x360.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from streamgan.engines.openvino import wide_row_convolutions
from streamgan.temporal import state_size

from . import metrics as M
from .data import VIDEO_EXT, list_sources, load_frames, normalise_exposure, read_image, read_video
from .options import Config, DataError
from .deploy import STATE_IN, STATE_OUT, TEMPORAL_PROCESSING
from .rain import rain_pair, rain_streaks
from .synth import darken_filter, make_night


class OnnxRunner:
    def __init__(self, path: str | Path):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise DataError(f"{path}: no such ONNX file")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            raise DataError(f"{path}: not an ONNX model ONNX Runtime can load ({str(e).splitlines()[0][:200]})") from None
        self.path = str(path)
        # a temporal model (trainer.temporal): one image runs with the empty state, a clip (``clip``) with the state
        # carried from frame to frame
        self.state = next((i.shape[1] for i in self.sess.get_inputs() if i.name == STATE_IN), None)
        self.processing, self.state_scale = _temporal_beside(path) if self.state else (None, 1)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 -> uint8 HxWx3 (padded to a multiple of 4 with reflection, cropped back)."""
        return self._step(img, None)[0]

    def clip(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Frames of one clip in order: a temporal model carries its state through them."""
        outs, state = [], None
        for f in frames:
            o, state = self._step(f, state)
            outs.append(o)
        return outs

    def _step(self, img: np.ndarray, state):
        h, w = img.shape[:2]
        ph, pw = (-h) % 4, (-w) % 4
        x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else img
        x = ((x.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        feeds = {"input": x}
        if self.state:
            sw, sh = state_size(x.shape[3], x.shape[2], self.processing, self.state_scale)
            if state is None or state.shape[2:] != (sh, sw):
                state = np.zeros((1, self.state, sh, sw), np.float32)
            feeds[STATE_IN] = state
        got = self._run(feeds)
        y = got[0][0]
        y = ((y.transpose(1, 2, 0) * 0.5 + 0.5) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        return y[:h, :w], (got[1] if self.state else None)

    def _run(self, feeds: dict) -> list:
        return self.sess.run(["output"] + ([STATE_OUT] if self.state else []), feeds)


class OpenVinoRunner(OnnxRunner):
    """The same contract through OpenVINO on CPU at its default precision (bf16 where the CPU has it)."""

    def __init__(self, path: str | Path):
        import openvino as ov

        self.core, self.path, self.compiled = ov.Core(), str(path), {}
        m = self.core.read_model(self.path)
        self.state = next((i.get_partial_shape()[1].get_length() for i in m.inputs if i.any_name == STATE_IN), None)
        self.processing, self.state_scale = _temporal_beside(path) if self.state else (None, 1)

    def _run(self, feeds: dict) -> list:
        key = tuple(v.shape for v in feeds.values())
        if key not in self.compiled:
            m = self.core.read_model(self.path)
            m.reshape({k: list(v.shape) for k, v in feeds.items()})
            self.compiled[key] = self.core.compile_model(m, "CPU")
        res = self.compiled[key](feeds)
        return [res[0]] + ([res[STATE_OUT]] if self.state else [])


def _temporal_beside(path) -> tuple:
    """Where a temporal model's network runs and its state's scale (the state's size): from the card beside
    the ONNX file when there is one (a plugin folder), else the temporal trainer's defaults."""
    from streamgan.card import ModelCard

    card = Path(path).with_name("card.yaml")
    try:
        c = ModelCard.load(card) if card.is_file() else None
    except Exception:  # noqa: BLE001 - an unreadable card beside a file being scored: the default
        c = None
    if c is None:
        return TEMPORAL_PROCESSING, 1
    return c.processing, (c.temporal.state[0].scale if c.temporal else 1)


def _type_name(t) -> str:
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


def openvino_fps(path: str | Path, w: int = 640, h: int = 360, iters: int = 20) -> dict:
    """Model-only frames per second with OpenVINO on CPU (default precision), static 1x3xHxW (a temporal
    model with its state at its network's size), median."""
    try:
        import openvino as ov
    except ImportError:
        return {"error": "openvino not installed"}
    core = ov.Core()
    m = core.read_model(str(path))
    feeds = {m.inputs[0].any_name: np.random.default_rng(0).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)}
    for i in m.inputs[1:]:  # a temporal model's state
        sw, sh = state_size(w, h, *_temporal_beside(path))
        feeds[i.any_name] = np.zeros((1, i.get_partial_shape()[1].get_length(), sh, sw), np.float32)
    m.reshape({k: list(v.shape) for k, v in feeds.items()})
    c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"} if wide_row_convolutions(m) else {})
    req = c.create_infer_request()
    for _ in range(3):
        req.infer(feeds)
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        req.infer(feeds)
        ts.append(time.perf_counter() - t)
    return {"fps": round(1.0 / float(np.median(ts)), 1), "precision": _type_name(c.get_property("INFERENCE_PRECISION_HINT")),
            "shape": [1, 3, h, w]}


def _resize(img: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize(wh, Image.BICUBIC))


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str], path: Path, width: int = 320) -> str:
    """One row per example; columns as labelled (e.g. input / output / target)."""
    from PIL import Image, ImageDraw

    cells = []
    for row in rows:
        cells.append([_resize(im, (width, round(im.shape[0] * width / im.shape[1]))) for im in row])
    hs = [max(c.shape[0] for c in r) for r in cells]
    sheet = Image.new("RGB", (width * len(labels), 18 + sum(hs)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for j, lab in enumerate(labels):
        d.text((j * width + 4, 3), lab, fill=(0, 0, 0))
    y = 18
    for r, h in zip(cells, hs):
        for j, c in enumerate(r):
            sheet.paste(Image.fromarray(c), (j * width, y))
        y += h
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    sheet.save(tmp)
    os.replace(tmp, path)
    return str(path)


def frames_of(sources: list, field: str = "eval", stride: int = 1, limit: int | None = None) -> list[np.ndarray]:
    """Frames of videos, images and folders of them, in order: every ``stride``-th frame of a video,
    at most ``limit`` in all. A missing or undecodable source raises DataError naming it."""
    frames: list[np.ndarray] = []
    for p in list_sources([str(s) for s in sources], field=field):
        left = limit - len(frames) if limit else None
        frames += read_video(p, stride, left) if p.suffix.lower() in VIDEO_EXT else [read_image(p)]
        if limit and len(frames) >= limit:
            break
    return frames[:limit]


def _holdout_frames(files: list[str], size: tuple[int, int], limit: int, stride: int = 4) -> list[np.ndarray]:
    frames = [_resize(a, size) for a in frames_of(files, "data.holdout_a", stride)]
    if not frames:
        raise DataError("evaluation needs data.holdout_a frames")
    idx = np.linspace(0, len(frames) - 1, min(limit, len(frames))).round().astype(int)
    return [frames[i] for i in idx]


def rain12_scores(run, folder: str | Path) -> dict:
    """Y-PSNR/SSIM of a paired set (rainy/*.png beside clean/*.png), model and do-nothing; the PSNRs also
    colour-aligned (:func:`metrics.psnr_y_colour_aligned`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"paired set {folder}: no such folder (relative paths are taken from the current "
                        "folder, then from the repository root)")
    rainy = sorted((folder / "rainy").glob("*.png"))
    if not rainy:
        raise DataError(f"paired set: no rainy/*.png in {folder}")
    base_p, base_s, base_c, p, s, c, examples = [], [], [], [], [], [], []
    for f in rainy:
        a = read_image(f)
        b = read_image(folder / "clean" / f.name)
        o = run(a) if run else a
        base_p.append(M.psnr_y(a, b)), base_s.append(M.ssim_y(a, b)), base_c.append(M.psnr_y_colour_aligned(a, b))
        p.append(M.psnr_y(o, b)), s.append(M.ssim_y(o, b)), c.append(M.psnr_y_colour_aligned(o, b))
        examples.append([a, o, b])
    return {"n": len(rainy), "input_psnr": float(np.mean(base_p)), "input_ssim": float(np.mean(base_s)),
            "psnr": float(np.mean(p)), "ssim": float(np.mean(s)),
            "input_psnr_colour_aligned": float(np.mean(base_c)), "psnr_colour_aligned": float(np.mean(c)),
            "_examples": examples}


def evaluate(cfg: Config, checkpoint: str | None = None, onnx: str | None = None, out: str | None = None,
             fps: bool = True) -> dict:
    out_dir = Path(out or Path(cfg.train.out) / "eval")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmpdir = None
    if onnx is None:
        from .deploy import deployable, export_onnx
        from .train import CKPT, generator_from_checkpoint

        net, _ = generator_from_checkpoint(checkpoint or Path(cfg.train.out) / CKPT, cfg.model.generator)
        net = deployable(cfg, net)
        tmpdir = tempfile.mkdtemp(prefix="streamgan-eval-")
        onnx = str(export_onnx(net, Path(tmpdir) / "model.onnx"))
    run = OnnxRunner(onnx)
    ev = cfg.eval
    report: dict = {"task": cfg.task, "model": onnx, "kind": ev.kind}
    t0 = time.time()
    if ev.kind == "derain":
        report.update(_eval_derain(cfg, run, out_dir))
    else:
        report.update(_eval_day2night(cfg, run, out_dir))
    if fps:
        report["openvino_640x360"] = openvino_fps(onnx)
    report["eval_s"] = round(time.time() - t0, 1)
    report["card_metrics"] = _card_metrics(report)
    path = out_dir / "report.json"
    tmp = path.with_name("report.json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, path)
    report["report"] = str(path)
    if tmpdir:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)
    return report


def _flicker(cfg: Config, run, transform=None) -> dict | None:
    ev = cfg.eval
    if not ev.clip or not Path(ev.clip).exists():
        return None
    frames = frames_of([ev.clip], limit=ev.clip_frames)
    w, h = ev.size
    frames = [_resize(f, (w, h)) for f in frames]
    if transform:
        frames = [transform(f) for f in frames]
    outs = run.clip(frames)
    fi, fo = M.flicker(frames), M.flicker(outs)
    return {"clip": ev.clip, "frames": len(frames), "input": round(fi, 3), "output": round(fo, 3),
            "ratio": round(fo / max(fi, 1e-9), 3)}


def _eval_derain(cfg: Config, run, out_dir: Path) -> dict:
    ev = cfg.eval
    rep: dict = {}
    sheet_rows = []
    if ev.rain12:
        r = rain12_scores(run, ev.rain12)
        sheet_rows += r.pop("_examples")[:4]
        rep["rain12"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
        try:  # what the default runtime backend gives (bf16 arithmetic on CPUs that have it)
            rv = rain12_scores(OpenVinoRunner(run.path), ev.rain12)
            rep["rain12_openvino"] = {"psnr": round(rv["psnr"], 4), "ssim": round(rv["ssim"], 4)}
        except ImportError:
            pass
    for name, folder in ev.paired_sets.items():
        r = rain12_scores(run, folder)
        ex = r.pop("_examples")
        sheet_rows += ex[:1]
        rep[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
    # synthetic pairs from held-out frames (`adapt` holds none out: the user's frames are all trained on)
    clean = _holdout_frames(cfg.data.holdout_a, tuple(ev.size), ev.synthetic_pairs) if cfg.data.holdout_a else []
    bp, bs, p, s = [], [], [], []
    for i, c in enumerate(clean):
        rainy, target = (_u8(t) for t in rain_pair(_t(c), torch.Generator().manual_seed(10_000 + i)))
        o = run(rainy)
        bp.append(M.psnr_y(rainy, target)), bs.append(M.ssim_y(rainy, target))
        p.append(M.psnr_y(o, target)), s.append(M.ssim_y(o, target))
        if i % max(1, len(clean) // 3) == 0 and len(sheet_rows) < 9:
            sheet_rows.append([rainy, o, target])
    if clean:
        rep["synthetic_holdout"] = {"n": len(clean), "size": list(ev.size), "input_psnr": round(float(np.mean(bp)), 4),
                                    "input_ssim": round(float(np.mean(bs)), 4), "psnr": round(float(np.mean(p)), 4),
                                    "ssim": round(float(np.mean(s)), 4)}
    if ev.clean_hd:
        rep.update(_clean_hd(ev.clean_hd, run))
    if ev.real_clip:
        frames = frames_of([ev.real_clip], limit=ev.clip_frames)
        outs = run.clip(frames)
        fi, fo = M.flicker(frames), M.flicker(outs)
        rep["real_flicker"] = {"clip": ev.real_clip, "frames": len(frames), "input": round(fi, 3),
                               "output": round(fo, 3), "ratio": round(fo / max(fi, 1e-9), 3)}
    if ev.real_rain:
        rep["real_sheet"] = real_sheet(ev.real_rain, run, out_dir / "real_rain_before_after.png")
    rep["flicker"] = _flicker(cfg, run)
    labels = ["input (rainy)", "output", "target (clean)"]
    rep["contact_sheet"] = contact_sheet(sheet_rows, labels, out_dir / "contact_sheet.png")
    real = 4 if ev.rain12 else 0  # the first rows of the real paired sets, when there are two
    pick = (real, real + 1) if len(ev.paired_sets) >= 2 else (2, len(sheet_rows) - 1)
    pick = sorted({min(i, len(sheet_rows) - 1) for i in pick})
    rep["before_after"] = contact_sheet([sheet_rows[i] for i in pick], labels,
                                        out_dir / "before_after.png", width=300)
    return rep


def _clean_hd(sources: list[str], run, n: int = 8) -> dict:
    """Clean 1280x720 frames: the model should give them back untouched (PSNR to themselves), and thin
    streaks added at that size should still come off (PSNR to the clean frame, before and after)."""
    frames = [_resize(f, (1280, 720)) for f in frames_of(sources, "eval.clean_hd")]
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    fid, sin, sout = [], [], []
    for k, i in enumerate(idx):
        c = frames[i]
        fid.append(M.psnr_y(run(c), c))
        gen = torch.Generator().manual_seed(30_000 + k)
        streaks = rain_streaks(720, 1280, gen)
        rainy = _u8((_t(c) + streaks).clamp(0, 1))
        sin.append(M.psnr_y(rainy, c)), sout.append(M.psnr_y(run(rainy), c))
    return {"clean_720p": {"n": len(idx), "psnr_to_input": round(float(np.mean(fid)), 3),
                           "min_psnr_to_input": round(float(np.min(fid)), 3)},
            "thin_streaks_720p": {"n": len(idx), "input_psnr": round(float(np.mean(sin)), 3),
                                  "psnr": round(float(np.mean(sout)), 3)}}


def real_sheet(sources: list[str], run, path: Path, width: int = 240, per_row: int = 3) -> str:
    """Before/after cells for every real degraded frame (no target): before | after, ``per_row`` pairs a row."""
    from PIL import Image, ImageDraw

    files = list_sources(sources, field="eval.real_rain")
    cells = []
    for f in files:
        for a in frames_of([f], "eval.real_rain"):
            h = round(a.shape[0] * width / a.shape[1])
            o = run(a)
            cells.append((f.parent.name + "/" + f.name, _resize(a, (width, h)), _resize(o, (width, h))))
    ch = max(c[1].shape[0] for c in cells) + 14
    rows = (len(cells) + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * (2 * width + 8), rows * ch), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for k, (name, a, o) in enumerate(cells):
        x, y = (k % per_row) * (2 * width + 8), (k // per_row) * ch
        d.text((x + 2, y + 1), f"{name}: before | after", fill=(0, 0, 0))
        sheet.paste(Image.fromarray(a), (x, y + 14))
        sheet.paste(Image.fromarray(o), (x + width, y + 14))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    sheet.save(tmp, optimize=True)
    os.replace(tmp, path)
    return str(path)


def _eval_day2night(cfg: Config, run, out_dir: Path) -> dict:
    ev = cfg.eval
    day = _holdout_frames(cfg.data.holdout_a, tuple(ev.size), ev.synthetic_pairs)
    night_files = list_sources(cfg.data.holdout_b, field="data.holdout_b")
    night = [f for p in night_files for f in load_frames([p], 1280)]
    if cfg.data.normalise_b:  # the same exposure normalisation as the training pool
        night = [normalise_exposure(f, cfg.data.normalise_b) for f in night]
    night = [f.permute(1, 2, 0).numpy() for f in night]
    outs = [run(d) for d in day]
    dark = [_u8(darken_filter(_t(d))) for d in day]
    synth = [_u8(make_night(_t(d), torch.Generator().manual_seed(20_000 + i))) for i, d in enumerate(day)]
    dist = {"model": M.night_distance(outs, night), "input": M.night_distance(day, night),
            "darken_filter": M.night_distance(dark, night), "synthesiser": M.night_distance(synth, night)}
    struct = {"model": float(np.mean([M.structure_score(d, o) for d, o in zip(day, outs)])),
              "darken_filter": float(np.mean([M.structure_score(d, o) for d, o in zip(day, dark)])),
              "input": 1.0}
    rep = {"night_holdout": [str(p) for p in night_files], "n_day": len(day),
           "night_distance": {k: round(v, 4) for k, v in dist.items()},
           "structure": {k: round(v, 4) for k, v in struct.items()},
           "mean_luma": {"input": round(float(np.mean([M.rgb_to_y(d).mean() for d in day])), 4),
                         "model": round(float(np.mean([M.rgb_to_y(o).mean() for o in outs])), 4),
                         "night": round(float(np.mean([M.rgb_to_y(n).mean() for n in night])), 4)}}
    rep.update(_night_looks(day, outs))
    real = night_real(cfg)
    if real:
        rep["night_realism"] = night_realism(real, {"model": outs, "input": day, "darken_filter": dark})
    rep["flicker"] = _flicker(cfg, run)
    idx = np.linspace(0, len(day) - 1, min(5, len(day))).round().astype(int)
    rows = [[day[i], dark[i], outs[i], _resize(night[k % len(night)], (day[i].shape[1], day[i].shape[0]))]
            for k, i in enumerate(idx)]
    labels = ["input (day)", "darkening filter", "output", "real night (ref)"]
    rep["contact_sheet"] = contact_sheet(rows, labels, out_dir / "contact_sheet.png")
    rep["before_after"] = contact_sheet([r[:3] for r in rows[1:4:2]], labels[:3], out_dir / "before_after.png",
                                        width=300)
    return rep


def night_real(cfg: Config) -> dict[str, list[np.ndarray]]:
    """The real dashcam night frames of ``eval.night_real`` by set, as recorded (no exposure normalisation;
    a clip: every ``eval.night_real_stride``-th frame)."""
    ev = cfg.eval
    return {name: frames_of(src, f"eval.night_real.{name}", stride=ev.night_real_stride)
            for name, src in ev.night_real.items()}


def _luma(imgs: list[np.ndarray]) -> np.ndarray:
    """Full-range BT.601 luma (0-255) of every pixel of ``imgs``."""
    return np.concatenate([i.reshape(-1, 3).astype(np.float32) @ np.float32([0.299, 0.587, 0.114]) for i in imgs])


def night_realism(real: dict[str, list[np.ndarray]], sides: dict[str, list[np.ndarray]]) -> dict:
    """How close each side (outputs of the held-out ``day`` frames) comes to real dashcam night: the patch
    distance (``metrics.night_distance``) to the sets of ``real`` pooled (each set an equal share) and to
    each set alone, the mean and percentiles of luma (0-255), the real sets' own beside them."""
    def luma(imgs):
        y = _luma(imgs)
        return {"mean": round(float(y.mean()), 1), "p50": round(float(np.median(y)), 1),
                "p90": round(float(np.percentile(y, 90)), 1), "p99": round(float(np.percentile(y, 99)), 1)}

    rep: dict = {"real": {name: {"frames": len(f), "luma": luma(f)} for name, f in real.items()}}
    for side, outs in sides.items():
        rep[side] = {"distance": round(M.night_distance(outs, real), 4),
                     "by_set": {name: round(M.night_distance(outs, f), 4) for name, f in real.items()},
                     "luma": luma(outs)}
    return rep


def night_exposure_scores(cfg: Config, onnx: str | Path) -> dict:
    """Night realism, structure and sky of another exposure's graph on the held-out day frames (for the card)."""
    run = OnnxRunner(onnx)
    day = _holdout_frames(cfg.data.holdout_a, tuple(cfg.eval.size), cfg.eval.synthetic_pairs)
    outs = [run(d) for d in day]
    real = night_real(cfg)
    looks = _night_looks(day, outs)
    scores = {"structure_score": round(float(np.mean([M.structure_score(d, o) for d, o in zip(day, outs)])), 4),
              "mean_luma": round(float(_luma(outs).mean()), 1), "sky": looks["sky"]}
    if real:
        scores["night_realism"] = night_realism(real, {"model": outs})["model"]["distance"]
    return scores


def _night_looks(day: list[np.ndarray], outs: list[np.ndarray]) -> dict:
    """What a viewer checks first: is the daylit sky dark, and are there light sources?

    Sky: the day frame's sky mask (bright, smooth, high in the frame and reaching its top, as the night
    synthesiser finds it);
    its mean luma in the output, per frame. Lights: output pixels brighter than 0.75 luma that were not
    already that bright in the day frame (share of the frame, per frame)."""
    from .lights import sky_mask

    sky_luma, lights = [], []
    for d, o in zip(day, outs):
        mask = sky_mask(_t(d))[0, 0].numpy() > 0.5
        yo, yd = M.rgb_to_y(o), M.rgb_to_y(d)
        if mask.mean() > 0.02:
            sky_luma.append(float(yo[mask].mean()))
        lights.append(float(((yo > 0.75) & (yd <= 0.75)).mean()))
    return {"sky": {"frames_with_sky": len(sky_luma), "max_mean_luma": round(max(sky_luma), 4) if sky_luma else None,
                    "dark_frames": int(sum(v < 0.2 for v in sky_luma))},
            "lights": {"frames": len(lights), "frames_with_new_lights": int(sum(v > 2e-4 for v in lights)),
                       "mean_share": round(float(np.mean(lights)), 5)}}


def primary_score(rep: dict) -> tuple[float, str]:
    """One number to compare two models of a task (higher is better) and what it is."""
    if "night_realism" in rep:
        return -rep["night_realism"]["model"]["distance"], "night realism distance (lower is better)"
    if "night_distance" in rep:
        return -rep["night_distance"]["model"], "night distance (lower is better)"
    keys = [k for k in ("rain12", "robotcar_drops", "raindrop_glass", "synthetic_holdout") if k in rep]
    return float(np.mean([rep[k]["psnr"] for k in keys])), f"mean Y-PSNR over {', '.join(keys)}"


def _card_metrics(rep: dict) -> dict:
    m: dict = {}
    if "rain12" in rep:
        r = rep["rain12"]
        m["rain12_psnr_y"], m["rain12_ssim_y"] = round(r["psnr"], 2), round(r["ssim"], 4)
        m["rain12_input_psnr_y"], m["rain12_input_ssim_y"] = round(r["input_psnr"], 2), round(r["input_ssim"], 4)
    if "rain12_openvino" in rep:
        m["rain12_psnr_y_openvino"] = round(rep["rain12_openvino"]["psnr"], 2)
        m["rain12_ssim_y_openvino"] = round(rep["rain12_openvino"]["ssim"], 4)
    for name in ("robotcar_drops", "raindrop_glass"):
        if name in rep:
            r = rep[name]
            m[f"{name}_psnr_y"], m[f"{name}_ssim_y"] = round(r["psnr"], 2), round(r["ssim"], 4)
            m[f"{name}_input_psnr_y"], m[f"{name}_input_ssim_y"] = round(r["input_psnr"], 2), round(r["input_ssim"], 4)
            m[f"{name}_psnr_y_colour_aligned"] = round(r["psnr_colour_aligned"], 2)  # two cameras' exposure taken out
            m[f"{name}_input_psnr_y_colour_aligned"] = round(r["input_psnr_colour_aligned"], 2)
    if "clean_720p" in rep:
        m["clean_720p_psnr_y_to_input"] = rep["clean_720p"]["psnr_to_input"]
        m["thin_streaks_720p_psnr_y"] = rep["thin_streaks_720p"]["psnr"]
        m["thin_streaks_720p_input_psnr_y"] = rep["thin_streaks_720p"]["input_psnr"]
    if rep.get("real_flicker"):
        m["real_rain_flicker_ratio"] = rep["real_flicker"]["ratio"]
    if "synthetic_holdout" in rep:
        r = rep["synthetic_holdout"]
        m["synthetic_holdout_psnr_y"], m["synthetic_holdout_ssim_y"] = round(r["psnr"], 2), round(r["ssim"], 4)
        m["synthetic_holdout_input_psnr_y"] = round(r["input_psnr"], 2)
        m["synthetic_holdout_input_ssim_y"] = round(r["input_ssim"], 4)
    if "night_distance" in rep:
        m["night_distance"] = rep["night_distance"]
        m["structure_score"] = rep["structure"]
        m["sky"], m["lights"] = rep["sky"], rep["lights"]
    if "night_realism" in rep:  # against real dashcam night as recorded
        m["night_realism"] = {k: {"distance": v["distance"], "mean_luma": v["luma"]["mean"]}
                              for k, v in rep["night_realism"].items() if k != "real"}
        m["night_realism"]["real_mean_luma"] = {k: v["luma"]["mean"] for k, v in rep["night_realism"]["real"].items()}
    if rep.get("flicker"):
        m["flicker_ratio"] = rep["flicker"]["ratio"]
    fps = rep.get("openvino_640x360", {})
    if "fps" in fps:
        m["openvino_fps_640x360"] = fps["fps"]
        m["openvino_precision"] = fps["precision"]
    return m
