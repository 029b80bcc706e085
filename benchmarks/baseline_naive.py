"""The naive baseline: what the usual CycleGAN tutorials have users write.

cv2.VideoCapture -> per-frame eager PyTorch fp32 (BGR->RGB, to tensor, normalise, model, back)
-> cv2.VideoWriter, all in one thread. The model is the same generator: the trainer's
``nn.Module`` rebuilt from the plugin card's architecture with the weights read from the ONNX
file (names match one to one), as a tutorial user would hold it. Where that is not possible (no
card, another architecture) the ONNX graph is evaluated with PyTorch operators instead
(``OnnxModule``, measured ~2x slower than the ``nn.Module`` on the derain generator), and
``describe_model`` says so. Run alone: ``python benchmarks/baseline_naive.py MODEL.onnx IN OUT``.
"""

from __future__ import annotations

import re
import sys
import time


class _OneStream:
    """A temporal model called frame by frame as one stream: it keeps its state between calls (a new one
    when the frame size changes)."""

    def __init__(self, model, card):
        self.model, self.card, self.state = model, card, None

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, x):
        import torch

        from streamgan.temporal import state_size

        spec = self.card.temporal.state[0]
        sw, sh = state_size(x.shape[3], x.shape[2], self.card.processing, spec.scale)
        if self.state is None or tuple(self.state.shape[2:]) != (sh, sw) or self.state.shape[0] != x.shape[0]:
            self.state = torch.zeros(x.shape[0], spec.channels, sh, sw)
        y, self.state = self.model(x, self.state)
        return y


def load_eager_model(onnx_path):
    """(torch module, description): the trainer's nn.Module when the card allows, else OnnxModule."""
    from pathlib import Path

    import onnx
    import torch
    from onnx import numpy_helper

    card = Path(onnx_path).parent / "card.yaml"
    try:
        from streamgan.card import ModelCard
        from trainer.networks import Relit, SourceResolution, build_generator

        card = ModelCard.load(card)
        if card.temporal is not None:  # a drop-fill model, run as one stream
            from trainer.temporal import model_of

            return _OneStream(model_of(onnx_path), card), "trainer nn.Module, eager fp32"
        arch = card.architecture.split()
        if arch[:2] != ["mobile", "generator"] and arch[1:2] != ["generator"]:
            raise ValueError(f"unknown architecture {arch}")
        kw = {}
        for tok in arch[2:]:
            k, v = tok.split("=")
            kw[k] = {"True": True, "False": False}.get(v, int(v) if v.isdigit() else v)
        net = build_generator(kind=arch[0], **kw)
        weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
                   for i in onnx.load(str(onnx_path)).graph.initializer}
        # the exported graph wraps the generator as the export did (trainer.export.deployable): the light
        # renderer (day2night: weights under net.net.) inside the source-resolution wrapper (net.)
        depth = min(len(re.match(r"(net\.)*", k).group(0)) for k in weights) // 4 if weights else 0
        mod = net
        if depth == 2 or (depth == 1 and card.processing.policy != "source"):
            ne = card.night_exposure  # which of the card's night exposures this graph is
            exposure = "bright" if ne is None else next(
                (n for n, w in ne.others.items() if w.file == Path(onnx_path).name), ne.default)
            mod = Relit(mod, exposure=exposure)
        if card.processing.policy == "source":
            mod = SourceResolution(mod, card.processing.short_side,
                                   gain=not (arch[0] == "mobile" and kw.get("residual") is True))
        missing, _ = mod.load_state_dict(weights, strict=False)  # constants of the renderer are extra
        if missing:
            raise ValueError(f"weights missing from the ONNX file: {missing[:3]}")
        return mod.eval(), "trainer nn.Module, eager fp32"
    except Exception as e:  # no card / no trainer / names differ: evaluate the ONNX graph
        from streamgan.engines.torch import OnnxModule

        why = (str(e).splitlines() or [type(e).__name__])[0][:150]  # one line in the results table
        return OnnxModule(onnx_path).eval(), f"ONNX graph on torch ops, eager fp32 ({why})"


def run_naive(onnx_path, src, dst, max_frames: int | None = None, model=None) -> tuple[int, float]:
    """Translate ``src`` into ``dst`` the naive way; returns (frames, seconds)."""
    import cv2
    import numpy as np
    import torch

    model = model if model is not None else load_eager_model(onnx_path)[0]
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n, t0 = 0, time.perf_counter()
    while max_frames is None or n < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)[None]
        pad_h, pad_w = -h % 4, -w % 4
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        with torch.no_grad():
            y = model(x)[0, :, :h, :w]
        img = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        out.write(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR))
        n += 1
    cap.release()
    out.release()
    return n, time.perf_counter() - t0


if __name__ == "__main__":
    frames, seconds = run_naive(*sys.argv[1:4])
    print(f"{frames} frames in {seconds:.1f} s: {frames / seconds:.2f} fps")
