"""What ships: the generator wrapped as it runs in a plugin (``deployable``), exported to ONNX (opset 17,
dynamic batch/height/width) and checked against PyTorch.

``export`` writes plugins with these, ``evaluate`` exports a checkpoint with them to score what would ship.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from streamgan.card import Processing

from .options import Config

OPSET = 17


# a temporal model's state tensor: its graph input and output (the card's temporal section names them), and
# where its network runs (trainer.networks.TemporalDerain's default; the card's processing section)
STATE_IN, STATE_OUT = "state", "state_out"
TEMPORAL_PROCESSING = Processing(policy="source", short_side=360, size_multiple=4)


def export_onnx(net: torch.nn.Module, path: str | Path, sample_hw: tuple[int, int] = (64, 96),
                temporal: bool = False) -> Path:
    """Export to ``path`` (via a temp file) and return it. ``temporal``: a temporal model,
    ``net(x, state) -> (y, new state)`` (``trainer.networks``), its state (``STATE_IN`` ->
    ``STATE_OUT``) with dynamic sizes too (the sample's state: ``net.zero_state`` at the sample's size,
    below any processing short side)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".streamgan-tmp.onnx")
    net = net.eval().float().cpu()
    x = torch.zeros(1, 3, *sample_hw)
    axes = {0: "batch", 2: "height", 3: "width"}
    args, names_in, names_out = (x,), ["input"], ["output"]
    dyn = {"input": axes, "output": axes}
    if temporal:
        args = (x, net.zero_state(1, *sample_hw))
        names_in, names_out = ["input", STATE_IN], ["output", STATE_OUT]
        saxes = {0: "batch", 2: "state_height", 3: "state_width"}
        dyn.update({STATE_IN: saxes, STATE_OUT: saxes})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, args, str(tmp), input_names=names_in, output_names=names_out,
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False)
    os.replace(tmp, path)
    return path


def check_onnx(net: torch.nn.Module, path: str | Path, shapes=((1, 3, 64, 96), (2, 3, 120, 200)),
               tol: float = 1e-4, seed: int = 0) -> float:
    """Max abs difference between ONNX Runtime and PyTorch over a few input shapes; raises above ``tol``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for shp in shapes:
        x = torch.rand(*shp, generator=gen) * 2 - 1
        with torch.no_grad():
            ref = net.eval()(x).numpy()
        got = sess.run(["output"], {"input": x.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    if worst > tol:
        raise RuntimeError(f"ONNX export of {path} differs from PyTorch by {worst:.2e} (> {tol:.0e})")
    return worst


def deployable(cfg: Config, net: torch.nn.Module, exposure: str | None = None) -> torch.nn.Module:
    """What ships: the generator, wrapped to run at short side and apply its result at full size for policy
    'source' (a residual generator's correction as it is; any other generator's with a local gain), after the
    fixed light renderer when ``export.relight`` is set (at night ``exposure``: default the config's first of
    ``export.night_exposures``, else "bright")."""
    if cfg.export.relight:
        from .networks import Relit

        exposure = exposure or (cfg.export.night_exposures or ["bright"])[0]
        net = Relit(net, exposure=exposure).eval()
    if cfg.export.policy == "source":
        from .networks import SourceResolution

        g = cfg.model.generator
        return SourceResolution(net, cfg.export.short_side, gain=not (g.kind == "mobile" and g.residual)).eval()
    return net
