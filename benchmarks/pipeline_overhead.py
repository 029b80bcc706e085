"""Issue-2 pipeline overhead in one run: a compute-heavy ResNet-9 (random weights) end to end vs
model only, an identity model vs decode+encode, and derain with x264 veryfast vs ultrafast.
Needs the trainer (torch) and onnx. Run: python benchmarks/pipeline_overhead.py
"""
import warnings; warnings.filterwarnings("ignore")
import torch, onnx, tempfile
from onnx import TensorProto, helper
from trainer.networks import build_generator
from streamgan import Translator, bench
from streamgan.io import EncodeOptions
net = build_generator(kind="resnet", ngf=64, n_blocks=9).eval()
torch.onnx.export(net, torch.randn(1,3,64,96), "/tmp/resnet9.onnx", dynamo=False, opset_version=17,
    input_names=["input"], output_names=["output"], dynamic_axes={"input":{0:"n",2:"h",3:"w"},"output":{0:"n",2:"h",3:"w"}})
x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"]); y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), "/tmp/id.onnx")
clip = bench.make_clip("/work/shared/data/clips/udacity_lanelines_solidWhiteRight.mp4", "/tmp/c360.mp4", 640, 360, 150)
short = bench.make_clip("/work/shared/data/clips/udacity_lanelines_solidWhiteRight.mp4", "/tmp/c360s.mp4", 640, 360, 16)
heavy = Translator("/tmp/resnet9.onnx", backend="openvino")
ident = Translator("/tmp/id.onnx", backend="openvino")
der = Translator("derain", backend="openvino")
ms = [bench.model_only(heavy.backend, 640, 360, iters=6, reps=3), bench.end_to_end(heavy, short, reps=3, label="e2e resnet9 (16 frames)"),
      bench.transcode(clip, reps=3), bench.end_to_end(ident, clip, reps=3, label="e2e identity"),
      bench.transcode(clip, reps=3, encode=EncodeOptions(preset="ultrafast"), label="decode+encode ultrafast"),
      bench.end_to_end(der, clip, reps=3, label="e2e derain veryfast"),
      bench.end_to_end(der, clip, reps=3, encode=EncodeOptions(preset="ultrafast"), label="e2e derain ultrafast")]
print(bench.report(ms, bench.machine(), {"resnet9 e2e/model": f"{ms[1].median/ms[0].median:.0%}", "identity e2e/io": f"{ms[3].median/ms[2].median:.0%}"}))
