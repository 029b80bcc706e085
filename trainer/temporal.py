"""Temporal deraining: train a model that sees a stream's history (:class:`trainer.networks.TemporalDerain`).

Training data are clips with time in them: consecutive frames of real driving clips and day stills moved
the way a dashcam moves (:func:`trainer.rain.move_still`), with rain that stays on the glass while the scene
moves (:func:`trainer.rain.rain_clip`). The state is fixed arithmetic (:func:`trainer.networks.temporal_features`,
nothing learned), so a step runs the state over the clip's first frames without gradients and trains the
network on the last one. A share of the clips is one frame long: a lone image (empty state) must be derained
too.

Runs keep ``latest.pt`` (generator, optimiser, step, wall time) in their folder, written every few minutes and
at the end; ``resume=True`` goes on from it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import losses as L
from .data import list_sources, load_frames, to_model
from .networks import TEMPORAL_EXTRA, DropFill, DropFinder, TemporalDerain, build_generator
from .options import DataError
from .overlay import stamp
from .rain import move_still, rain_clip
from .train import load_checkpoint, run_lock, save_checkpoint, weights_from_onnx

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class TemporalOptions:
    """What a temporal run trains on and how (saved in its checkpoint and in the plugin's card). ``kind``:
    "network" trains the generator with the temporal statistics as extra input (:class:`TemporalDerain`);
    "dropfill" keeps the generator as it is and trains a drop finder whose map is filled from around
    (:class:`DropFill`), supervised by where the synthesiser put drops on the glass."""

    kind: str = "network"

    clips: list[str] = field(default_factory=lambda: [
        str(DATA / "clips/udacity_lanelines_solidWhiteRight.mp4"), str(DATA / "clips/yolop_bdd_input1.gif")])
    sequences: list[str] = field(default_factory=lambda: [str(DATA / "day/deeptl_lanechange")])
    stills: list[str] = field(default_factory=lambda: [
        str(DATA / "day/udacity"), str(DATA / "day/flir_roadscene"), str(DATA / "day/bdd100k"),
        str(DATA / "day/nuscenes_sample")])
    holdout: list[str] = field(default_factory=lambda: [
        "udacity_vehdet_test_video", "advlane_test5", "lanelines_solidYellowCurve2", "697_1515", "697_1516",
        "697_1517", "697_1518", "697_1519"])
    # rain_clip's options: windshield drops, mostly in focus (a dashcam focused far away sees them sharp), and a
    # share of streaks alone (Rain12 style) so streak removal is kept
    synth: dict = field(default_factory=lambda: {
        "p_streaks_only": 0.15, "p_drops": 0.95, "p_near_drops": 0.1, "p_lens_drops": 0.1, "p_dense_drops": 0.35,
        "p_fine_streaks": 0.5, "p_soft_drops": 0.15, "p_focus": 0.8, "p_running": 0.3})
    crop: int = 160
    scale: tuple[float, float] = (0.35, 0.9)
    batch: int = 8
    frames: tuple[int, int] = (3, 8)  # clip length drawn in this range; p_single of clips are one frame
    p_single: float = 0.15
    p_still: float = 0.5
    clean_fraction: float = 0.1
    p_overlay: float = 0.0  # clips with a burnt-in text overlay (trainer/overlay.py), kept in the target
    lr: float = 1e-4
    lr_new: float = 1e-3  # the temporal input's convolution, new in a warm start
    steps: int = 6000
    decay_start: int = 3000  # the rates fall linearly to 0 from here to the last step
    init: str = "plugins/derain/model.onnx"
    generator: dict = field(default_factory=lambda: {
        "kind": "mobile", "ngf": 16, "n_blocks": 15, "norm": "none", "skips": True, "residual": True,
        "out_kernel": 3})
    keep: float = 0.8
    threads: int = 1
    checkpoint_every_s: float = 240.0
    seed: int = 0


DROPFILL_SYNTH = {  # windshield drops as a dashcam sees them, most of the time, mostly under an overcast sky
    "p_streaks_only": 0.15, "p_drops": 0.95, "p_windshield": 0.7, "p_overcast": 0.6, "p_near_drops": 0.05,
    "p_lens_drops": 0.05, "p_dense_drops": 0.25, "p_fine_streaks": 0.5, "p_soft_drops": 0.1, "p_focus": 0.8, "p_running": 0.3}
# drops on the windshield in every clip (sheets and tests that show the drop fill at work)
WINDSHIELD_ONLY = {**DROPFILL_SYNTH, "p_windshield": 1.0, "p_streaks_only": 0.0, "p_drops": 1.0}


def preset(kind: str) -> TemporalOptions:
    """A run's options by kind: "network" (the defaults) or "dropfill" (the drop-fill recipe: windshield drops
    most of the time, the finder's rate, a fifth of the clips clean, 2500 steps)."""
    if kind == "dropfill":
        return TemporalOptions(kind="dropfill", synth=dict(DROPFILL_SYNTH), lr_new=1e-3, steps=2500, decay_start=1500,
                               clean_fraction=0.2)
    return TemporalOptions(kind=kind)


def build(opts: TemporalOptions) -> TemporalDerain | DropFill:
    g = {k: v for k, v in opts.generator.items() if k != "kind"}
    if opts.kind == "dropfill":
        return DropFill(build_generator(opts.generator["kind"], **g), DropFinder(), keep=opts.keep)
    return TemporalDerain(build_generator(opts.generator["kind"], **g, extra_in=TEMPORAL_EXTRA), keep=opts.keep)


class ClipPool:
    """Clips of consecutive frames (real clips and frame sequences) and stills to move, in memory as uint8
    CHW; ``sample`` cuts the same random window out of every frame of a clip."""

    def __init__(self, opts: TemporalOptions, held_out: bool = False, max_side: int = 640):
        keep = (lambda p: any(h in str(p) for h in opts.holdout)) if held_out else \
            (lambda p: not any(h in str(p) for h in opts.holdout))
        self.opts, self.clips, self.stills = opts, [], []
        extra = [str(DATA / "clips/udacity_vehdet_test_video.mp4")] if held_out else []  # the held-out clip
        for c in list(opts.clips) + extra:
            if keep(c) and Path(c).exists():
                self.clips.append(load_frames([Path(c)], max_side, video_stride=1))
        for s in opts.sequences:  # a folder of frames named in order: one clip
            files = [f for f in list_sources([s]) if keep(f)]
            if files:
                self.clips.append(load_frames(files, max_side))
        for s in opts.stills:
            self.stills += load_frames([f for f in list_sources([s]) if keep(f)], max_side)

    def sample(self, n_frames: int, gen: torch.Generator) -> torch.Tensor:
        """One clip, ``n_frames`` x 3 x crop x crop in [0, 1]."""
        o = self.opts
        if self.clips and (not self.stills or float(torch.rand((), generator=gen)) >= o.p_still):
            clip = self.clips[int(torch.randint(len(self.clips), (), generator=gen))]
            stride = int(torch.randint(1, 4, (), generator=gen))  # speeds: 1-3 frames a step
            if len(clip) < 20:
                stride = 1
            span = (n_frames - 1) * stride + 1
            stride = stride if span <= len(clip) else 1
            start = int(torch.randint(max(1, len(clip) - (n_frames - 1) * stride), (), generator=gen))
            frames = torch.stack([clip[min(start + i * stride, len(clip) - 1)] for i in range(n_frames)]).float() / 255
        else:
            img = self.stills[int(torch.randint(len(self.stills), (), generator=gen))].float()[None] / 255
            frames = move_still(img, n_frames, gen)
        _, _, h, w = frames.shape
        lo, hi = o.scale
        s = max(lo + (hi - lo) * float(torch.rand((), generator=gen)), o.crop / min(h, w))
        side = min(int(round(o.crop / s)), h, w)
        y = int(torch.randint(h - side + 1, (), generator=gen))
        x = int(torch.randint(w - side + 1, (), generator=gen))
        patch = frames[:, :, y:y + side, x:x + side]
        if side != o.crop:
            patch = F.interpolate(patch, size=(o.crop, o.crop), mode="bilinear", antialias=side > o.crop,
                                  align_corners=False)
        if float(torch.rand((), generator=gen)) < 0.5:
            patch = patch.flip(-1)
        return patch.clamp(0, 1)


def clip_batch(pool: ClipPool, opts: TemporalOptions, gen: torch.Generator):
    """(rainy, clean) batches of clips: T x N x 3 x crop x crop, one length T for the batch; for a drop-fill
    run also where the drops on the glass are in the last frames (N x 1 x crop x crop)."""
    lo, hi = opts.frames
    t = 1 if float(torch.rand((), generator=gen)) < opts.p_single else int(torch.randint(lo, hi + 1, (), generator=gen))
    masks = opts.kind == "dropfill"
    ins, tgts, drops = [], [], []
    for _ in range(opts.batch):
        clean = pool.sample(t, gen)
        if float(torch.rand((), generator=gen)) < opts.clean_fraction:  # some clips need no change at all
            rainy, tgt, mask = clean, clean, [torch.zeros(1, 1, *clean.shape[2:])] if masks else []
        else:
            rainy, tgt, *mask = rain_clip(clean, gen, drop_mask=masks, **opts.synth)
        if opts.p_overlay and float(torch.rand((), generator=gen)) < opts.p_overlay:
            (rainy, tgt), cover = stamp((rainy, tgt), gen)  # burnt in after the glass: no drop under it
            mask = [m * (1 - cover) for m in mask]
        ins.append(rainy)
        tgts.append(tgt)
        drops += mask
    out = (torch.stack(ins, 1), torch.stack(tgts, 1))
    return out + (torch.cat(drops),) if masks else out


class _Batches(torch.utils.data.IterableDataset):
    def __init__(self, pool: ClipPool, opts: TemporalOptions, seed: int):
        self.pool, self.opts, self.seed = pool, opts, seed

    def __iter__(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the trainer decides when to stop
        torch.set_num_threads(1)
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            yield clip_batch(self.pool, self.opts, gen)


def run_state(model: TemporalDerain | DropFill, clip: torch.Tensor) -> torch.Tensor:
    """The state after the clip's frames (T x N x 3 x H x W in the model's range), as a stream builds it."""
    state = model.zero_state(clip.shape[1], *clip.shape[3:])
    for frame in clip:
        state = model.advance(frame, state)
    return state


def train(out: str | Path, opts: TemporalOptions | None = None, resume: bool = False,
          max_steps: int | None = None, workers: int = 1, total: int | None = None,
          synth: dict | None = None) -> dict:
    """Train (or resume) a temporal derain model into ``out``; returns the last losses. ``total``: the run's
    length in steps (a resumed run too), its rates falling from its middle (or the run's decay start, if
    earlier) to 0 at its end."""
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "latest.pt"
    with run_lock(out):
        if resume and ck_path.exists():
            ck = load_checkpoint(ck_path)
            opts = TemporalOptions(**json.loads(ck["arch"]))
        opts = opts or TemporalOptions()
        if total:
            opts.steps, opts.decay_start = total, min(opts.decay_start, total // 2)
        if synth is not None:  # a new stage of the run with another rain mix
            opts.synth = dict(synth)
        torch.set_num_threads(opts.threads)
        model = build(opts)
        step, wall = 0, 0.0
        dropfill = isinstance(model, DropFill)
        if dropfill:  # the generator stays as it is; the finder learns
            model.net.requires_grad_(False)
            groups = [{"params": list(model.finder.parameters()), "lr": opts.lr_new}]
        else:
            new = [p for n, p in model.named_parameters() if "inc_extra" in n]
            old = [p for n, p in model.named_parameters() if "inc_extra" not in n]
            groups = [{"params": old, "lr": opts.lr}, {"params": new, "lr": opts.lr_new}]
        optim = torch.optim.Adam(groups, betas=(0.9, 0.999))
        if resume and ck_path.exists():
            load_nets(model, ck)
            optim.load_state_dict(ck["optims"]["G"])
            step, wall = int(ck["step"]), float(ck["wall_time_s"])
        elif opts.init:
            weights = weights_from_onnx(opts.init)
            finder = {k[len("finder."):]: weights.pop(k) for k in list(weights) if k.startswith("finder.")}
            if finder and dropfill:  # a drop-fill plugin: its finder goes on from where it was
                model.finder.load_folded(finder)
            missing, unexpected = model.net.load_state_dict(weights, strict=False)
            if unexpected or any("inc_extra" not in k for k in missing):
                raise ValueError(f"{opts.init}: not a warm start for {opts.generator}: "
                                 f"missing {missing}, unexpected {unexpected}")
        pool = ClipPool(opts)
        print(f"streamgan-train temporal: {len(pool.clips)} clips, {len(pool.stills)} stills; "
              f"from step {step}", file=sys.stderr)
        loader = iter(torch.utils.data.DataLoader(
            _Batches(pool, opts, opts.seed * 1000 + step), batch_size=None, num_workers=workers,
            prefetch_factor=2 if workers else None, multiprocessing_context="spawn" if workers else None))
        stop: list[str] = []
        old_int = signal.signal(signal.SIGINT, lambda *_: stop.append("interrupt"))
        old_term = signal.signal(signal.SIGTERM, lambda *_: stop.append("terminate"))

        def save():
            nets = {"G": model.net.state_dict(), **({"finder": model.finder.state_dict()} if dropfill else {})}
            save_checkpoint(ck_path, {"step": step, "wall_time_s": wall, "arch": json.dumps(asdict(opts)),
                                      "nets": nets, "optims": {"G": optim.state_dict()}})

        last_ck, logs = time.time(), {}
        end = opts.steps if max_steps is None else min(opts.steps, step + max_steps)
        try:
            while step < end and not stop:
                t0 = time.time()
                rainy, clean, *drops = next(loader)
                rainy, clean = to_model(rainy), to_model(clean)
                with torch.no_grad():
                    state = run_state(model, rainy[:-1])
                bce = None
                if dropfill:
                    with torch.no_grad():
                        derained = model.net(rainy[-1])
                    logits, _ = model.find(rainy[-1], state)
                    pred = model.fill(derained, model.weigh(torch.sigmoid(logits), state))
                    bce = drop_loss(logits, model.down(drops[0]))
                else:
                    pred, _ = model.step(rainy[-1], state)
                l1 = F.l1_loss(pred, clean[-1])
                ss = L.ssim_loss(pred, clean[-1])
                loss = l1 + 0.2 * ss + (0.5 * bce if bce is not None else 0)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                fall = min(1.0, max(0.0, (opts.steps - step) / max(1, opts.steps - opts.decay_start)))
                for g, lr in zip(optim.param_groups, (opts.lr_new,) if dropfill else (opts.lr, opts.lr_new)):
                    g["lr"] = lr * fall
                optim.step()
                step += 1
                wall += time.time() - t0
                logs = {"step": step, "l1": round(l1.item(), 4), "ssim": round(ss.item(), 4),
                        **({"bce": round(bce.item(), 4)} if bce is not None else {}),
                        "frames": int(rainy.shape[0]), "s": round(time.time() - t0, 2)}
                if step % 25 == 0:
                    print(json.dumps(logs), file=sys.stderr, flush=True)
                if time.time() - last_ck > opts.checkpoint_every_s:
                    save()
                    last_ck = time.time()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
            save()
        return {**logs, "stopped": stop[0] if stop else None, "checkpoint": str(ck_path)}


DROP_SURE, DROP_NONE = 0.06, 0.02  # a drop changes a pixel by more than DROP_SURE; less than DROP_NONE: no drop


def drop_loss(logits: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the finder's map against where drops change the frame by more than
    ``DROP_SURE`` (``rain_clip``'s drop mask); pixels changed by ``DROP_NONE`` to ``DROP_SURE`` (faint rims,
    blurred edges) do not count either way."""
    target = (change > DROP_SURE).float()
    weight = ((change > DROP_SURE) | (change < DROP_NONE)).float()
    return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() / weight.sum().clamp_min(1)


def load_nets(model: TemporalDerain | DropFill, ck: dict) -> None:
    model.net.load_state_dict(ck["nets"]["G"])
    if isinstance(model, DropFill):
        model.finder.load_state_dict(ck["nets"]["finder"])


# ------------------------------------------------------------------------------------------- export
def export(run: str | Path, plugin_dir: str | Path, metrics: dict | None = None, notes: str = "",
           limitations: str | None = None, title: str | None = None) -> Path:
    """Write the run's model as a temporal derain plugin: ``model.onnx`` (image and state in, image and new
    state out, checked against PyTorch) and ``card.yaml`` (the shipped derain card's processing and data,
    its ``temporal`` section, the run's options and ``metrics``)."""
    from streamgan.card import ModelCard, sha256_file

    from .deploy import STATE_IN, STATE_OUT, export_onnx

    ck = load_checkpoint(Path(run).expanduser() / "latest.pt")
    opts = TemporalOptions(**json.loads(ck["arch"]))
    model = build(opts)
    load_nets(model, ck)
    model.eval()
    if isinstance(model, DropFill):
        model.finder.fold_()
    pdir = Path(plugin_dir)
    pdir.mkdir(parents=True, exist_ok=True)
    onnx = export_onnx(model, pdir / "model.onnx.tmp", temporal=True)
    err = _check_export(model, onnx)
    base = ModelCard.load(Path(__file__).resolve().parents[1] / "plugins" / "derain" / "card.yaml")
    ours = [{"name": "BDD100K clip (consecutive frames)", "path": "clips/yolop_bdd_input1.gif",
             "licence": "BDD100K terms (research / non-commercial)", "count": 72},
            {"name": "synthetic rain clips (drops that stay on the glass)", "path": "trainer/rain.py rain_clip",
             "licence": "MIT", "count": None}]
    # the shipped card's data less its synthetic rain (a frame-by-frame card's pairs; a temporal one's clips)
    data = [d.model_dump() for d in base.training.data
            if "synthetic rain" not in d.name and d.name not in {o["name"] for o in ours}] + ours
    net = describe_generator(opts.generator)
    if isinstance(model, DropFill):
        title = title or "Rain removal (temporal: drops on the glass found and filled from around)"
        arch = (f"drop fill: the {net} (as shipped), a drop finder "
                f"({sum(p.numel() for p in model.finder.parameters())} parameters) and a push-pull fill from "
                f"around, at 1/{model.state_scale} of the network's size; state (that size): running mean, change "
                f"and previous frame, and the drop map (keep {opts.keep})")
    else:
        title = title or "Rain removal (temporal: drops found by what stays on the glass while the scene moves)"
        arch = (f"temporal {net}; state: running mean, change and previous frame at the network's size "
                f"(keep {opts.keep})")
    card = ModelCard(
        task="derain", title=title, direction=base.direction, architecture=arch,
        version=time.strftime("%Y.%m.%d"), licence=base.licence, normalisation=base.normalisation,
        processing=base.processing,
        weights={"file": "model.onnx", "sha256": sha256_file(onnx), "opset": 17},
        temporal={"state": [{"input": STATE_IN, "output": STATE_OUT, "channels": model.state_channels,
                             "scale": model.state_scale}]},
        training={"config": "trainer/temporal.py TemporalOptions", "data": data, "steps": int(ck["step"]),
                  "wall_time_s": round(float(ck["wall_time_s"]), 1), "device": "cpu",
                  "notes": (f"warm start from {opts.init}; clips of {opts.frames[0]}-{opts.frames[1]} frames "
                            f"({opts.p_single:g} single frames), crop {opts.crop}, batch {opts.batch}, lr {opts.lr:g} "
                            f"(temporal input {opts.lr_new:g}), synthesiser {opts.synth}"
                            + (f", burnt-in text overlays on {opts.p_overlay:.0%} of the clips (trainer/overlay.py)"
                               if opts.p_overlay else "") + f". {notes}").strip()},
        metrics={"onnx_max_abs_err_vs_torch": float(f"{err:.3g}"), **(metrics or {})},
        limitations=limitations,
    )
    os.replace(onnx, pdir / "model.onnx")
    card.dump(pdir / "card.yaml")
    for stale in ("model.int8.xml", "model.int8.bin"):  # the int8 model of other weights
        (pdir / stale).unlink(missing_ok=True)
    return pdir


def describe_generator(g: dict) -> str:
    """A generator's options (``TemporalOptions.generator``) as a card's architecture names them."""
    return (f"{g['kind']} generator ngf={g['ngf']} n_blocks={g['n_blocks']} norm={g['norm']} skips={g['skips']} "
            f"residual={g['residual']} out_kernel={g['out_kernel']}")


def generator_of(onnx: str | Path) -> tuple[dict, torch.nn.Module, dict]:
    """What a drop-fill plugin's graph holds, its weights read once: the derain generator's options
    (``TemporalOptions.generator``, sizes read from its weights), the generator with its weights, and the
    finder's (folded) weights."""
    w = weights_from_onnx(onnx)
    if "inc.1.weight" not in w or not any(k.startswith("finder.") for k in w):
        raise DataError(f"{onnx}: not a drop-fill model's graph (a derain generator and a drop finder)")
    options = {**TemporalOptions().generator, "ngf": int(w["inc.1.weight"].shape[0]),
               "n_blocks": len({k.split(".")[1] for k in w if k.startswith("blocks.")}),
               "out_kernel": int(w["outc.1.weight"].shape[-1])}
    net = build_generator(options["kind"], **{k: v for k, v in options.items() if k != "kind"})
    net.load_state_dict({k: v for k, v in w.items() if not k.startswith("finder.")})
    return options, net, {k[len("finder."):]: v for k, v in w.items() if k.startswith("finder.")}


def model_of(onnx: str | Path) -> DropFill:
    """A drop-fill plugin's model as the trainer's module (batch norm folded, as exported), from its graph's
    weights and its card (where the network runs, the state's scale)."""
    from streamgan.card import ModelCard

    card = ModelCard.load(Path(onnx).parent / "card.yaml")
    _, net, finder_weights = generator_of(onnx)
    finder = DropFinder().fold_()
    finder.load_state_dict(finder_weights)
    return DropFill(net, finder, card.processing.short_side, card.processing.size_multiple,
                    scale=card.temporal.state[0].scale).eval()


def export_frame_model(plugin_dir: str | Path, out_dir: str | Path) -> Path:
    """A drop-fill plugin's derain network alone as a frame-by-frame plugin in ``out_dir``: the streaks
    removed, the drops on the glass left (no finder, no fill, no state), for what runs frames one by one
    or in pieces (int8, tiles, TensorRT batches). The card is the plugin's without its temporal section and
    its metrics (they measured the whole model)."""
    from streamgan.card import ModelCard, sha256_file

    from .deploy import export_onnx
    from .networks import SourceResolution

    src = Path(plugin_dir)
    card = ModelCard.load(src / "card.yaml")
    options, net, _ = generator_of(src / card.weights.file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx = export_onnx(SourceResolution(net, card.processing.short_side, card.processing.size_multiple).eval(),
                       out / "model.onnx")
    card.model_copy(update={
        "title": f"{card.title}: its derain network alone (frame by frame; drops on the glass left)",
        "architecture": describe_generator(options),
        "weights": card.weights.model_copy(update={"sha256": sha256_file(onnx)}),
        "temporal": None, "int8": None, "metrics": {}}).dump(out / "card.yaml")
    return out


def frame_by_frame(plugin: str | Path, out_dir: str | Path) -> Path:
    """``plugin`` as it runs frame by frame: itself if it is, else its derain network alone, written to
    ``out_dir`` (:func:`export_frame_model`)."""
    from streamgan.card import ModelCard

    if ModelCard.load(Path(plugin) / "card.yaml").temporal is None:
        return Path(plugin)
    return export_frame_model(plugin, out_dir)


def _check_export(model: TemporalDerain, onnx: Path, tol: float = 1e-4) -> float:
    """Max abs difference between ONNX Runtime and PyTorch over three frames of one stream, at two sizes."""
    import numpy as np
    import onnxruntime as ort

    from streamgan.temporal import state_size

    from .deploy import STATE_IN, STATE_OUT, TEMPORAL_PROCESSING

    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in ((120, 200), (720, 1280)):
        sw, sh = state_size(w, h, TEMPORAL_PROCESSING, model.state_scale)
        st = torch.zeros(1, model.state_channels, sh, sw)
        s_onnx = st.numpy()
        for _ in range(3):
            x = torch.rand(1, 3, h, w, generator=gen) * 2 - 1
            with torch.no_grad():
                ref, st = model(x, st)
            got, s_onnx = sess.run(["output", STATE_OUT], {"input": x.numpy(), STATE_IN: s_onnx})
            worst = max(worst, float(np.abs(ref.numpy() - got).max()), float(np.abs(st.numpy() - s_onnx).max()))
    if worst > tol:
        raise RuntimeError(f"ONNX export of {onnx} differs from PyTorch by {worst:.2e} (> {tol:.0e})")
    return worst


if __name__ == "__main__":  # python -m trainer.temporal OUT [--resume] [--steps N]
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--steps", type=int, help="stop after this many more steps")
    ap.add_argument("--total", type=int, help="the run's length in steps (its rates fall to 0 there)")
    ap.add_argument("--synth", type=json.loads, help="the rain mix from here on (JSON of rain_pair's options)")
    a = ap.parse_args()
    print(json.dumps(train(a.out, resume=a.resume, max_steps=a.steps, total=a.total, synth=a.synth)))
