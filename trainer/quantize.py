"""``streamgan-train quantize``: an int8 version of a plugin's model for CPUs, with its own quality.

NNCF post-training quantisation of the OpenVINO model read from the plugin's fp32 ONNX, calibrated on real
driving frames from the config's training pools (``data.train_a``, and ``data.train_real`` where a config has
real rainy frames), spread evenly over each pool's sources, never on the evaluation sets (``bench/*``) or the
held-out frames (``data.holdout_a``/``holdout_b``). The result is saved beside the ONNX as OpenVINO IR
(``model.int8.xml`` + ``.bin``) and recorded in the card's ``int8`` section with its sha256, its calibration,
the layers kept in higher precision and its own measured quality beside fp32's.

Quality gate (the same metrics as ``streamgan-train eval``, on the same sets): derain, Y-PSNR on Rain12
and on the real paired sets (``eval.paired_sets``) within 0.1 dB of fp32; day2night, night distance
within 2% of fp32's and structure score within 0.01. When a quantisation fails the gate, the first and
last convolutions, then more of them from both ends, are kept in higher precision (NNCF ignored scope)
and it is tried again; if none passes, the best try is kept with ``passed: false`` (``--precision int8``
still runs it, ``auto`` never picks it).

fp32 is scored with ONNX Runtime (``evaluate.OnnxRunner``, as ``eval`` and the card's metrics are), int8
with OpenVINO on the IR at its default precision (``evaluate.OpenVinoRunner``: bf16 for the layers kept
out of int8 on CPUs that have bf16), so the gate covers what runs.

Files are written to a temporary folder inside the plugin and renamed into place, then the card is
rewritten atomically: an interrupted run leaves the plugin as it was or with files its card refuses,
never a half-written model that loads.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from .data import VIDEO_EXT, list_sources, load_frames, normalise_exposure, read_image, read_video
from .evaluate import OnnxRunner, OpenVinoRunner, _holdout_frames, _resize, rain12_scores
from .options import CheckpointError, Config, ConfigError, DataError
from .quiet import nncf_output
from . import metrics as M

INT8_XML, INT8_BIN = "model.int8.xml", "model.int8.bin"
CALIB_SIZE = (640, 360)  # the card's processing size for 640x360 and 1280x720 input (short side 360)
PSNR_TOL_DB = 0.1
NIGHT_REL_TOL = 0.02
STRUCT_TOL = 0.01
KEEP_LEVELS = (0, 1, 2, 4)  # convolutions kept in higher precision from each end, tried in turn


def calibration_files(cfg: Config) -> list[Path]:
    """Training-pool files only: never bench/*, never a held-out file."""
    held = [str(Path(p)) for p in cfg.data.holdout_a + cfg.data.holdout_b]
    sources = list(cfg.data.train_a) + list(cfg.data.train_real)
    files = list_sources(sources, exclude=list(cfg.data.exclude), field="data.train_a")
    out = []
    for f in files:
        s = str(f)
        if "/bench/" in s or any(s == h or s.startswith(h.rstrip("/") + "/") for h in held):
            continue
        out.append(f)
    if not out:
        raise DataError("quantize: no calibration frames left in the training pools")
    return out


def _spread(counts: list[int], n: int) -> list[int]:
    """How many of ``n`` picks each source gives when it holds ``counts[i]`` files: as many from each as
    from the others, a small source all it has and the rest from the larger ones (any remainder from the
    first ones)."""
    take = [0] * len(counts)
    left = n
    while left > 0:
        open_ = [i for i, c in enumerate(counts) if take[i] < c]
        if not open_:
            break
        share = max(1, left // len(open_))
        for i in open_:
            k = min(share, counts[i] - take[i], left)
            take[i] += k
            left -= k
    return take


def calibration_frames(cfg: Config, n: int = 48, size: tuple[int, int] = CALIB_SIZE) -> tuple[list, dict]:
    """``n`` frames, RGB uint8 at ``size``, spread evenly over the training pools and, within a pool, over
    its sources (a folder of 60 frames of one rainy street gives no more than a folder of 5 windshield
    frames, while it has more left to give; a video source gives one frame). Returns the frames and how
    many came from each source."""
    pools = [cfg.data.train_a] + ([cfg.data.train_real] if cfg.data.train_real else [])
    files = calibration_files(cfg)
    picked: list[np.ndarray] = []
    used: dict[str, int] = {}
    for pool, quota in zip(pools, _spread([n] * len(pools), n)):  # n split exactly, the remainder first
        sources = [[f for f in files if f == Path(src) or Path(src) in f.parents] for src in pool]
        for src, its, k in zip(pool, sources, _spread([len(f) for f in sources], quota)):
            for i in sorted(set(np.linspace(0, len(its) - 1, k).round().astype(int).tolist()) if k else ()):
                f = its[i]
                a = read_video(f, 10, 8)[-1] if f.suffix.lower() in VIDEO_EXT else read_image(f)
                picked.append(_resize(a, size))
                used[str(src)] = used.get(str(src), 0) + 1
    return picked, used


def _to_model(img: np.ndarray, mean, std) -> np.ndarray:
    x = (img.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)[None]


def _convolutions(model) -> list[str]:
    """Names of the convolutions in topological order (input side first)."""
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution")]


def quantize_model(onnx: Path, frames: list[np.ndarray], mean, std, keep: list[str] = ()):
    """NNCF post-training quantisation of the OpenVINO model read from ``onnx``; ``keep``: layer names
    left in higher precision."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx))
    data = nncf.Dataset([_to_model(f, mean, std) for f in frames])
    scope = nncf.IgnoredScope(names=list(keep), validate=False) if keep else None
    kwargs = {"ignored_scope": scope} if scope else {}
    with nncf_output():  # NNCF's log lines and progress bars: stderr with --debug, else nowhere
        return nncf.quantize(model, data, subset_size=len(frames), preset=nncf.QuantizationPreset.MIXED,
                             target_device=nncf.TargetDevice.CPU, **kwargs)


def gate_metrics(cfg: Config, run) -> dict:
    """The numbers the quality gate compares, measured with ``run`` (uint8 HxWx3 -> same)."""
    ev = cfg.eval
    out: dict = {}
    if ev.kind == "derain":
        sets = ({"rain12": ev.rain12} if ev.rain12 else {}) | dict(ev.paired_sets)
        for name, folder in sets.items():
            r = rain12_scores(run, folder)
            out[f"{name}_psnr_y"], out[f"{name}_ssim_y"] = round(r["psnr"], 3), round(r["ssim"], 4)
        return out
    day = _holdout_frames(cfg.data.holdout_a, tuple(ev.size), ev.synthetic_pairs)
    night = [f for p in list_sources(cfg.data.holdout_b, field="data.holdout_b") for f in load_frames([p], 1280)]
    if cfg.data.normalise_b:
        night = [normalise_exposure(f, cfg.data.normalise_b) for f in night]
    night = [f.permute(1, 2, 0).numpy() for f in night]
    outs = [run(d) for d in day]
    out["night_distance"] = round(M.night_distance(outs, night), 4)
    out["structure_score"] = round(float(np.mean([M.structure_score(d, o) for d, o in zip(day, outs)])), 4)
    return out


def gate(kind: str, fp32: dict, int8: dict) -> tuple[bool, str, list[str]]:
    """(passed, the rule, what failed)."""
    failed = []
    if kind == "derain":
        rule = f"Y-PSNR within {PSNR_TOL_DB} dB of fp32 on " + ", ".join(k[:-7] for k in fp32 if k.endswith("_psnr_y"))
        if not any(k.endswith("_psnr_y") for k in fp32):  # nothing to judge by: never a pass
            failed.append("no paired benchmark set to score the int8 model on")
        for k in fp32:
            if k.endswith("_psnr_y") and int8[k] < fp32[k] - PSNR_TOL_DB:
                failed.append(f"{k} {int8[k]:.3f} vs {fp32[k]:.3f}")
    else:
        rule = f"night distance within {NIGHT_REL_TOL:.0%} of fp32, structure score within {STRUCT_TOL}"
        if abs(int8["night_distance"] - fp32["night_distance"]) > NIGHT_REL_TOL * fp32["night_distance"]:
            failed.append(f"night_distance {int8['night_distance']} vs {fp32['night_distance']}")
        if abs(int8["structure_score"] - fp32["structure_score"]) > STRUCT_TOL:
            failed.append(f"structure_score {int8['structure_score']} vs {fp32['structure_score']}")
    return not failed, rule, failed


def _shortfall(kind: str, fp32: dict, int8: dict) -> float:
    """How far a try is from fp32 (to keep the best one when none passes)."""
    if kind == "derain":
        return max((fp32[k] - int8[k] for k in fp32 if k.endswith("_psnr_y")), default=float("inf"))
    return (abs(int8["night_distance"] - fp32["night_distance"]) / max(fp32["night_distance"], 1e-9)
            / NIGHT_REL_TOL + abs(int8["structure_score"] - fp32["structure_score"]) / STRUCT_TOL)


def quantize_plugin(cfg: Config, plugin_dir: str | None = None, frames: int = 48, log=print) -> dict:
    """(Re)quantise the plugin in ``plugin_dir`` (default: the config's ``export.plugin_dir``) and record
    the int8 model in its card. A frame-by-frame plugin only: a temporal one's graph takes its state too."""
    from streamgan.card import CARD_FILE, ModelCard

    held = Path(plugin_dir or cfg.export.plugin_dir) / CARD_FILE
    if held.exists() and ModelCard.load(held).temporal is not None:
        raise DataError(f"quantize: {held.parent} holds a temporal model, and int8 models are made for frame-by-frame "
                        "plugins: `streamgan-train temporal frame --plugin-dir DIR` writes its derain network alone as one")
    try:
        import nncf
    except ImportError:
        raise ConfigError("quantize needs NNCF: pip install 'streamgan[train]' (or pip install nncf)") from None
    import openvino as ov

    from streamgan.card import CARD_FILE, Int8, ModelCard, sha256_file

    pdir = Path(plugin_dir or cfg.export.plugin_dir)
    card = ModelCard.load(pdir / CARD_FILE)
    onnx = pdir / card.weights.file
    if not onnx.is_file() or sha256_file(onnx) != card.weights.sha256:
        raise CheckpointError(f"quantize: {onnx} is missing or does not match its card; export the plugin first")
    t0 = time.time()
    norm = card.normalisation
    calib, used = calibration_frames(cfg, frames)
    log(f"quantize: {len(calib)} calibration frames at {CALIB_SIZE[0]}x{CALIB_SIZE[1]} from {used}")
    fp32 = gate_metrics(cfg, OnnxRunner(onnx))
    log(f"quantize: fp32 {fp32}")
    convs = _convolutions(ov.Core().read_model(str(onnx)))
    work = pdir / f".quantize-tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    best = None
    try:
        for k in KEEP_LEVELS:
            if 2 * k > len(convs):
                break
            keep = convs[:k] + convs[len(convs) - k:] if k else []
            trial = work / f"keep{k}"
            trial.mkdir()
            ov.save_model(quantize_model(onnx, calib, norm.mean, norm.std, keep), str(trial / INT8_XML))
            int8 = gate_metrics(cfg, OpenVinoRunner(trial / INT8_XML))
            passed, rule, failed = gate(cfg.eval.kind, fp32, int8)
            log(f"quantize: {len(keep)} convolutions kept in higher precision: {int8} "
                + ("passed" if passed else f"failed ({'; '.join(failed)})"))
            score = _shortfall(cfg.eval.kind, fp32, int8)
            if best is None or passed or score < best[0]:
                best = (score, trial, keep, int8, passed, rule, failed)
            if passed:
                break
        _, trial, keep, int8, passed, rule, failed = best
        section = Int8(
            file=INT8_XML, sha256=sha256_file(trial / INT8_XML), weights_file=INT8_BIN,
            weights_sha256=sha256_file(trial / INT8_BIN), of_sha256=card.weights.sha256,
            tool=f"nncf {nncf.__version__} post-training quantisation (preset mixed), openvino {ov.__version__}",
            calibration={"frames": len(calib), "size": f"{CALIB_SIZE[0]}x{CALIB_SIZE[1]}",
                         "sources": [f"{k}: {v}" for k, v in sorted(used.items())]},
            ignored_scope=list(keep), gate=rule,
            metrics={"int8": int8, "fp32": fp32, **({"failed": "; ".join(failed)} if failed else {})},
            passed=passed)
        new_card = card.model_copy(update={"int8": section})
        os.replace(trial / INT8_BIN, pdir / INT8_BIN)
        os.replace(trial / INT8_XML, pdir / INT8_XML)
        new_card.dump(pdir / CARD_FILE)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"plugin_dir": str(pdir), "int8": str(pdir / INT8_XML), "passed": passed,
            "ignored_scope": list(keep), "fp32": fp32, "int8_metrics": int8,
            "quantize_s": round(time.time() - t0, 1)}


__all__ = ["quantize_plugin", "quantize_model", "calibration_frames", "gate", "gate_metrics"]
