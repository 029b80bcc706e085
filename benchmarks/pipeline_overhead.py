"""Issue-2 pipeline overhead in one run: a compute-heavy ResNet-9 (random weights) end to end vs
model only, an identity model vs decode+encode, and derain with x264 veryfast vs ultrafast.
Needs the trainer (torch) and onnx. Run: python benchmarks/pipeline_overhead.py
"""

import tempfile
from pathlib import Path

import models
from streamgan import Translator, bench
from streamgan.io import EncodeOptions

SOURCE = Path(__file__).resolve().parents[2] / "shared/data/clips/udacity_lanelines_solidWhiteRight.mp4"

with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    clip = bench.make_clip(SOURCE, d / "c360.mp4", 640, 360, 150)
    short = bench.make_clip(SOURCE, d / "c360s.mp4", 640, 360, 16)
    heavy = Translator(models.resnet9(d / "resnet9.onnx"), backend="openvino")
    ident = Translator(models.identity(d / "identity.onnx"), backend="openvino")
    derain = Translator("derain", backend="openvino")
    ms = [bench.model_only(heavy.backend, 640, 360, iters=6, reps=3),
          bench.end_to_end(heavy, short, reps=3, label="e2e resnet9 (16 frames)"),
          bench.transcode(clip, reps=3),
          bench.end_to_end(ident, clip, reps=3, label="e2e identity"),
          bench.transcode(clip, reps=3, encode=EncodeOptions(preset="ultrafast"),
                          label="decode+encode ultrafast"),
          bench.end_to_end(derain, clip, reps=3, label="e2e derain veryfast"),
          bench.end_to_end(derain, clip, reps=3, encode=EncodeOptions(preset="ultrafast"),
                           label="e2e derain ultrafast")]
    print(bench.report(ms, bench.machine(), {
        "resnet9 e2e/model": f"{ms[1].median / ms[0].median:.0%}",
        "identity e2e/io": f"{ms[3].median / ms[2].median:.0%}"}))
