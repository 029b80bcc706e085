"""The plugin: the ONNX export (``trainer/deploy.py``: opset 17, dynamic batch/height/width, checked against
PyTorch), its evaluation, its card and, after them, its int8 model (``trainer/quantize.py``).

The ONNX file and the card are first written to temporary names in the plugin folder and renamed over
the old ones only after the check passed, so a failed export never leaves a half-written plugin.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .deploy import OPSET, check_onnx, deployable, export_onnx
from .lights import EXPOSURES
from .options import CheckpointError, Config
from .train import CKPT, generator_from_checkpoint


class ExportRefused(CheckpointError):
    """The new model scores worse than the plugin it would replace (use force to replace it anyway)."""


def _compare_with_shipped(cfg: Config, report: dict, shipped: Path, out: Path) -> dict:
    """Score the plugin in place with the same evaluation; refuse a worse new model."""
    from .evaluate import evaluate as run_eval, primary_score

    # only what the comparison needs: no contact sheets, clean-HD checks or flicker for the old model
    ev = cfg.eval.model_copy(update={"clean_hd": [], "real_clip": None, "real_rain": [], "clip": None})
    old = run_eval(cfg.model_copy(update={"eval": ev}), onnx=str(shipped), out=str(out), fps=False)
    new_s, what = primary_score(report)
    old_s, _ = primary_score(old)
    if new_s < old_s:
        raise ExportRefused(f"the new model scores worse than {shipped} on {what}: {abs(new_s):.3f} vs "
                            f"{abs(old_s):.3f}; the plugin was left as it is (export --force replaces it anyway)")
    return {"metric": what, "new": round(abs(new_s), 4), "replaced": round(abs(old_s), 4)}


def _staged(path: Path) -> Path:
    return path.with_name(path.name + ".streamgan-tmp")


def _card_training(folder: Path) -> dict | None:
    """The training section of the card in ``folder`` (None if there is none or it cannot be read)."""
    from streamgan.card import ModelCard

    try:
        return ModelCard.load(folder / "card.yaml").training.model_dump(mode="json")
    except Exception:  # noqa: BLE001 - no readable card: the checkpoint's own (empty) record is used
        return None


def export_plugin(cfg: Config, config_path: str, checkpoint: str | None = None, plugin_dir: str | None = None,
                  evaluate: bool = True, force: bool = False, quantize: bool = True) -> dict:
    from streamgan.card import ModelCard, sha256_file

    pdir = Path(plugin_dir or cfg.export.plugin_dir)
    if (pdir / "card.yaml").exists() and not force:
        held = ModelCard.load(pdir / "card.yaml")
        if held.temporal is not None:
            raise ExportRefused(f"{pdir} holds a temporal model ({held.task} {held.version}); a frame-by-frame export "
                                "would replace it: export into another --plugin-dir, or pass --force to replace it")
    ckpt = Path(checkpoint or Path(cfg.train.out) / CKPT)
    gen, ck = generator_from_checkpoint(ckpt, cfg.model.generator)
    net = deployable(cfg, gen)
    # a plugin's own ONNX file as the checkpoint: the same network with another wrapper or renderer; its
    # training is the card's beside it
    old_training = _card_training(ckpt.parent) if not ck else None
    if (pdir / "model.onnx").exists() and not evaluate and not force:
        raise ExportRefused(f"{pdir} holds a plugin; without the evaluation (--no-eval) the new model cannot be "
                            "compared with it: export into another --plugin-dir, or pass --force to replace it")
    pdir.mkdir(parents=True, exist_ok=True)
    staged = pdir / "model.onnx.streamgan-tmp"
    t0 = time.time()
    eval_s = 0.0
    export_onnx(net, staged)
    # the further night exposures (export.night_exposures after the first): the same network, each its own graph
    others = {name: (deployable(cfg, gen, name), pdir / f"model.{name}.onnx")
              for name in cfg.export.night_exposures[1:]}  # (options: night_exposures need relight)
    for other, path in others.values():
        export_onnx(other, _staged(path))
    try:  # nothing in the plugin folder is replaced until the check, evaluation and card pass
        # the light renderer's gamma curves and divisions carry float rounding further: 1e-3 of the [-1, 1]
        # range is an eighth of a uint8 level
        err = max(check_onnx(n, f, shapes=((1, 3, 64, 96), (2, 3, 120, 200), (1, 3, 720, 1280)),
                             tol=1e-3 if cfg.export.relight else 1e-4)
                  for n, f in [(net, staged)] + [(o, _staged(p)) for o, p in others.values()])
        metrics: dict = {"onnx_max_abs_err_vs_torch": float(f"{err:.3g}")}
        report = None
        if evaluate:
            from .evaluate import evaluate as run_eval, night_exposure_scores

            t_eval = time.time()
            report = run_eval(cfg, onnx=str(staged), out=str(Path(cfg.train.out) / "eval"))
            metrics.update(report["card_metrics"])
            if others:
                metrics["night_exposures"] = {name: night_exposure_scores(cfg, _staged(p))
                                              for name, (_, p) in others.items()}
            if (pdir / "model.onnx").exists() and not force:
                report["versus_replaced"] = _compare_with_shipped(cfg, report, pdir / "model.onnx",
                                                                  Path(cfg.train.out) / "eval_replaced")
            eval_s = time.time() - t_eval
        g = cfg.model.generator
        data = [d.model_dump() for d in cfg.export.data_notes]
        run = ck.get("run") or {"device": "cpu", "crop": cfg.data.crop, "batch_size": cfg.data.batch_size}
        notes = (f"{cfg.mode} training, synthesiser '{cfg.data.synth}'"
                 + (f" {run['synth_options']}" if run.get("synth_options") else "")
                 + f", crop {run['crop']}, batch {run['batch_size']} x {ck.get('world_size', 1)} process(es)"
                 + (f", lr {run['lr']:g}" if "lr" in run else "")
                 + (f", weights averaged over the steps (EMA decay {run['ema']:g})" if run.get("ema") else "")
                 + f"; frames: {ck.get('counts')}")
        card = ModelCard(
            task=cfg.task, title=cfg.export.title, direction=cfg.export.direction,
            architecture=(f"{g.kind} generator ngf={g.ngf} n_blocks={g.n_blocks} norm={g.norm}"
                          + (f" skips={g.skips} residual={g.residual} out_kernel={g.out_kernel}" if g.kind == "mobile" else "")),
            version=time.strftime("%Y.%m.%d"), licence=cfg.export.licence,
            processing={"policy": cfg.export.policy, "short_side": cfg.export.short_side, "size_multiple": 4},
            weights={"file": "model.onnx", "sha256": sha256_file(staged), "opset": OPSET},
            training=old_training or {
                "config": config_path, "data": data, "steps": int(ck.get("step", 0)),
                "wall_time_s": round(float(ck.get("wall_time_s", 0.0)), 1), "device": run["device"],
                "notes": notes},
            metrics=metrics, limitations=cfg.export.limitations,
            night_exposure=({"default": cfg.export.night_exposures[0],
                             "others": {n: {"file": p.name, "sha256": sha256_file(_staged(p)), "opset": OPSET}
                                        for n, (_, p) in others.items()},
                             "about": {n: EXPOSURES[n] for n in cfg.export.night_exposures}}
                            if cfg.export.night_exposures else None),
        )
    except BaseException:
        for f in [staged] + [_staged(p) for _, p in others.values()]:
            f.unlink(missing_ok=True)
        raise
    # what belonged to the replaced weights goes with them: its int8 model (quantize makes the new one) and its
    # before/after picture when this export makes none
    stale = []
    if (pdir / "card.yaml").exists():
        try:
            old_int8 = ModelCard.load(pdir / "card.yaml").int8
            stale += [old_int8.file, old_int8.weights_file] if old_int8 else []
        except Exception:  # an unreadable old card: nothing known to remove
            pass
    if not (report and report.get("before_after")):
        stale.append("before_after.png")
    os.replace(staged, pdir / "model.onnx")
    for _, p in others.values():
        os.replace(_staged(p), p)
    card.dump(pdir / "card.yaml")
    for name in stale:
        (pdir / name).unlink(missing_ok=True)
    if report and report.get("before_after"):
        import shutil

        shutil.copyfile(report["before_after"], pdir / "before_after.png.tmp")
        os.replace(pdir / "before_after.png.tmp", pdir / "before_after.png")
    export_s = time.time() - t0 - eval_s
    int8, quantize_s = None, None
    if evaluate and quantize:  # the int8 model of the new weights, with its own quality gate (trainer/quantize.py)
        from .quantize import quantize_plugin

        t_q = time.time()
        int8 = quantize_plugin(cfg, str(pdir), log=lambda m: print(m, file=sys.stderr))  # stdout: the JSON result
        quantize_s = round(time.time() - t_q, 1)
    # seconds: the export itself (ONNX, its check, the card), the evaluation (and the comparison with the plugin
    # it replaces), the int8 model (None: not made)
    return {"plugin_dir": str(pdir), "sha256": card.weights.sha256, "steps": card.training.steps,
            "versus_replaced": (report or {}).get("versus_replaced"), "export_s": round(export_s, 1),
            "eval_s": round(eval_s, 1), "quantize_s": quantize_s, "metrics": metrics, "int8": int8}


__all__ = ["OPSET", "deployable", "export_onnx", "check_onnx", "export_plugin", "CheckpointError", "ExportRefused"]
