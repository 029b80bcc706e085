"""``streamgan-train adapt``: fine-tune the shipped derain model to one fleet's cameras and windshields.

    streamgan-train adapt --rainy MY_RAINY_CLIPS --clear MY_CLEAR_CLIPS [--out derain-myfleet] [--steps 300] [--int8]

The same recipe as the shipped model (configs/train_derain.yaml), started from the shipped weights:
synthetic rain on the user's clear frames (paired L1 + SSIM) keeps it a deraining model, and the
adversarial term on its outputs for the user's real rainy frames (judged against the user's clear frames)
pulls it towards their cameras. Videos and image folders are both accepted; frames of different sizes are
fine (training cuts random crops). The plugin is written to a temporary folder and renamed into place only
when the export and its check passed; a failed run leaves nothing at ``--out``.

No int8 model unless ``--int8``: the card then has no int8 section and the runtime runs the ONNX model (bf16 on
CPUs that have it, else fp32). With ``--int8`` the plugin also gets the int8 model of ``streamgan-train
quantize``, gated on the public benchmarks (minutes more: each try is a quantisation and a scoring).
How long each phase took (training, export, evaluation, int8) is logged on one line each.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .data import list_sources, load_frames
from .options import REPO, Config, DataError, DataNote

BASE_CONFIG = REPO / "configs" / "train_derain.yaml"


def _sizes(frames) -> set[tuple[int, int]]:
    return {(int(f.shape[2]), int(f.shape[1])) for f in frames}


def check_sources(sources: list[str], role: str, stride: int) -> tuple[int, set]:
    """Every source exists, holds images or videos, and decodes (DataError naming the path otherwise)."""
    files = list_sources(sources, field=role)
    n, sizes = 0, set()
    for f in files:
        frames = load_frames([f], 960, stride)  # raises DataError naming an undecodable file
        n += len(frames)
        sizes |= _sizes(frames)
    return n, sizes


def _user_sheet(rainy: list[str], onnx: Path, path: Path, stride: int, n: int = 8, history: int = 6) -> None:
    """Before/after of a few of the user's own rainy frames, through the exported model. A temporal model runs
    each with the ``history`` frames before it (its drop fill waits for the stream's history)."""
    import numpy as np

    from .evaluate import OnnxRunner, contact_sheet

    frames = load_frames(list_sources(rainy, field="--rainy"), 960, stride)
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    run = OnnxRunner(onnx)
    rows = []
    for i in idx:
        a = np.ascontiguousarray(frames[i].permute(1, 2, 0).numpy())
        if run.state:
            before = [np.ascontiguousarray(f.permute(1, 2, 0).numpy()) for f in frames[max(0, i - history):i]]
            rows.append([a, run.clip([f for f in before if f.shape == a.shape] + [a])[-1]])
        else:
            rows.append([a, run(a)])
    contact_sheet(rows, ["your rainy frame", "adapted model"], path)


def adapt(rainy: list[str], clear: list[str], out: str, plugin: str = "derain", steps: int = 300,
          overrides: list[str] | None = None, log=print, int8: bool = False) -> dict:
    from streamgan.plugins import load as load_plugin

    from .export import export_plugin
    from .train import Trainer

    out_dir = Path(out)
    if out_dir.exists():
        raise DataError(f"--out {out_dir} exists; choose a new folder (the shipped plugin is never overwritten)")
    if not out_dir.absolute().parent.is_dir():
        raise DataError(f"--out {out_dir}: the folder {out_dir.absolute().parent} does not exist")
    stride = 5
    n_r, sizes_r = check_sources(rainy, "--rainy", stride)
    n_c, sizes_c = check_sources(clear, "--clear", stride)
    model = load_plugin(plugin)
    if model.card is None or model.card.task != "derain" or model.processing.policy != "source":
        raise DataError(f"--plugin {plugin}: adapt starts from a derain plugin exported with policy 'source'")
    if model.temporal is not None:
        return _adapt_drop_fill(model, plugin, rainy, clear, out_dir, steps, stride, overrides, int8, log, n_r, n_c)
    log(f"adapt: {n_r} rainy frames ({len(sizes_r)} size(s)), {n_c} clear frames ({len(sizes_c)} size(s)); "
        f"starting from {model.onnx}")
    runs = os.environ.get("STREAMGAN_RUNS") or os.path.expanduser("~/.cache/streamgan/runs")
    run_dir = Path(runs) / f"adapt-{out_dir.name}-{int(time.time())}"
    sets = [
        f"data.train_a={clear!r}", f"data.train_real={rainy!r}", "data.holdout_a=[]", "data.holdout_b=[]",
        f"data.video_stride={stride}", f"train.out={run_dir}", f"train.init_generator={model.onnx}",
        f"optim.steps={steps}", f"optim.decay_start={steps // 2}", "optim.lr=2.0e-4",
        # the lr rises over the first 30 steps: Adam's first full-size steps darkened the shipped model's
        # output by 3-7 levels in 8 bits after 3 steps (0.03-0.6 with the ramp)
        f"optim.warmup={min(30, steps)}",
        "loss.lambda_real_gan=0.02", "loss.real_gan_start=0",  # the unpaired term on the fleet's rainy frames
        f"train.sample_every={max(steps, 1)}", f"export.plugin_dir={out_dir}",
        "export.title=Rain removal (adapted to one fleet)",
        # the public benchmarks are scored when they are on this machine (the card then has metrics)
        "eval.clean_hd=[]", "eval.real_clip=null", "eval.clip=null", "eval.real_rain=[]",
    ]
    cfg = Config.load(BASE_CONFIG, sets + list(overrides or []))
    ev = cfg.eval.model_copy(update={
        "rain12": cfg.eval.rain12 if cfg.eval.rain12 and Path(cfg.eval.rain12).is_dir() else None,
        "paired_sets": {k: v for k, v in cfg.eval.paired_sets.items() if Path(v).is_dir()}})
    if int8 and ev.rain12 is None:  # the int8 model's quality gate scores it beside fp32 on the benchmarks
        where = f"not found at {cfg.eval.rain12}" if cfg.eval.rain12 else "not set"
        raise DataError(f"--int8: the int8 model is gated on the Rain12 benchmark (eval.rain12), {where}; "
                        "run without --int8 (the plugin then runs bf16/fp32)")
    # the card says what this model was trained on: the user's frames, from the starting weights
    start = model.card
    data = [DataNote(name="your clear frames, with synthetic rain (trainer/rain.py)", path=", ".join(map(str, clear)),
                     licence="yours", count=n_c),
            DataNote(name="your real rainy frames (unpaired adversarial term)", path=", ".join(map(str, rainy)),
                     licence="yours", count=n_r),
            DataNote(name=f"starting weights: {plugin} {start.version} (its card lists its own data)",
                     path=str(model.onnx), licence=start.licence)]
    limitations = (f"Fine-tuned by streamgan-train adapt for {steps} steps from {plugin} {start.version} on the frames "
                   "listed; the metrics here, where there are any, are this model's own. The starting model's card "
                   f"says: {start.limitations or 'nothing on its limitations'}")
    cfg = cfg.model_copy(update={"eval": ev, "export": cfg.export.model_copy(
        update={"data_notes": data, "limitations": limitations})})
    t0 = time.time()
    summary = Trainer(cfg, str(BASE_CONFIG)).run()
    train_s = time.time() - t0
    if "stopped_by" in summary:  # Ctrl-C or SIGTERM: a half-trained model is not a plugin
        log(f"adapt: stopped by {summary['stopped_by']} at step {summary['step']}; no plugin written "
            f"(the run is in {run_dir})")
        return {"stopped_by": summary["stopped_by"], "step": summary["step"], "run": str(run_dir)}
    log(f"adapt: training {train_s:.1f} s ({summary.get('step', steps)} steps)")
    staging = out_dir.with_name(f".{out_dir.name}.streamgan-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        res = export_plugin(cfg, str(BASE_CONFIG), plugin_dir=str(staging), evaluate=cfg.eval.rain12 is not None,
                            quantize=int8)
        res["before_after"] = str(out_dir / "before_after.png")
        t_sheet = time.time()
        _user_sheet(rainy, staging / "model.onnx", staging / "before_after.png", stride)
        sheet_s = time.time() - t_sheet
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if res["int8"]:  # quantised in the staging folder, which is now --out
        res["int8"].update({"plugin_dir": str(out_dir), "int8": str(out_dir / Path(res["int8"]["int8"]).name)})
    scored = ", ".join(["Rain12", *ev.paired_sets]) if ev.rain12 else "no benchmark on this machine"
    log(f"adapt: export {res['export_s']:.1f} s (ONNX, its check against PyTorch, the card)")
    log(f"adapt: evaluation {res['eval_s'] + sheet_s:.1f} s ({scored}; before/after of your frames)")
    if res["int8"]:
        verdict = "passed its gate" if res["int8"]["passed"] else "failed its gate: --precision auto leaves it out"
        log(f"adapt: int8 quantisation {res['quantize_s']:.1f} s ({verdict})")
    else:
        log("adapt: int8 quantisation skipped (--int8 makes an int8 model)")
    res.update({"plugin_dir": str(out_dir), "train_s": round(train_s, 1), "steps": summary.get("step", steps),
                "run": str(run_dir)})
    log(f"adapt: wrote {out_dir} (use: streamgan run --task {out_dir} clip.mp4)")
    return res


def _adapt_drop_fill(model, plugin: str, rainy: list[str], clear: list[str], out_dir: Path, steps: int, stride: int,
                     overrides, int8: bool, log, n_r: int, n_c: int) -> dict:
    """adapt for a temporal drop-fill plugin (``trainer.temporal``, kind "dropfill"): its drop finder is
    fine-tuned on the user's clear frames with synthetic drops on the glass (videos as clips, images moved
    the way a camera moves); the generator stays as it is. The user's rainy frames give the before/after
    sheet."""
    from . import temporal as T
    from .data import VIDEO_EXT
    from .networks import DROPFILL_SCALE, DROPFILL_STATE

    if [(s.channels, s.scale) for s in model.temporal.state] != [(DROPFILL_STATE, DROPFILL_SCALE)]:
        raise DataError(f"--plugin {plugin}: a temporal model whose state is not a drop-fill model's; adapt "
                        "fine-tunes frame-by-frame derain plugins and drop-fill temporal ones")
    if int8 or overrides:
        raise DataError(f"--plugin {plugin}: a temporal drop-fill model is adapted without "
                        f"{'--int8 (it has no int8 model)' if int8 else '--set (its options are its card)'}")
    files = list_sources(clear, field="--clear")
    videos = [str(f) for f in files if f.suffix.lower() in VIDEO_EXT]
    stills = [str(f) for f in files if f.suffix.lower() not in VIDEO_EXT]
    log(f"adapt: {n_r} rainy frames (for the before/after sheet), {n_c} clear frames ({len(videos)} clip(s), "
        f"{len(stills)} image(s)); fine-tuning the drop finder of {model.onnx}")
    runs = os.environ.get("STREAMGAN_RUNS") or os.path.expanduser("~/.cache/streamgan/runs")
    run_dir = Path(runs) / f"adapt-{out_dir.name}-{int(time.time())}"
    generator, *_ = T.generator_of(model.onnx)  # the generator's size, from its weights
    opts = T.TemporalOptions(kind="dropfill", synth=dict(T.DROPFILL_SYNTH), init=str(model.onnx), clips=videos,
                             generator=generator,
                             sequences=[], stills=stills, holdout=[], steps=steps, decay_start=steps // 2,
                             lr_new=3e-4, clean_fraction=0.2, checkpoint_every_s=120.0)
    t0 = time.time()
    res = T.train(run_dir, opts)
    train_s = time.time() - t0
    if res["stopped"]:
        log(f"adapt: stopped by {res['stopped']} at step {res['step']}; no plugin written (the run is in {run_dir})")
        return {"stopped_by": res["stopped"], "step": res["step"], "run": str(run_dir)}
    log(f"adapt: training {train_s:.1f} s ({res['step']} steps)")
    staging = out_dir.with_name(f".{out_dir.name}.streamgan-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    start = model.card
    try:
        t1 = time.time()
        T.export(run_dir, staging, notes=f"adapted from {plugin} {start.version} on the user's clear frames ({clear})",
                 limitations=(f"Fine-tuned by streamgan-train adapt for {steps} steps from {plugin} {start.version}: "
                              "its drop finder, on your clear frames with synthetic drops; the generator is the "
                              f"starting model's. The starting model's card says: {start.limitations or 'nothing'}"),
                 title="Rain removal (temporal drop fill, adapted to one fleet)")
        export_s = time.time() - t1
        _user_sheet(rainy, staging / "model.onnx", staging / "before_after.png", stride)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"adapt: export {export_s:.1f} s (ONNX, its check against PyTorch, the card)")
    log(f"adapt: wrote {out_dir} (use: streamgan run --task {out_dir} clip.mp4)")
    return {"plugin_dir": str(out_dir), "train_s": round(train_s, 1), "steps": res["step"], "run": str(run_dir),
            "before_after": str(out_dir / "before_after.png"), "int8": None}
