"""Generators the benchmarks run when a shipped plugin is not the point: written once, here.

Random weights cost the same as trained ones. Needs torch and the trainer (``[train]`` extra)
except ``identity``, which needs only ``onnx``.
"""

from __future__ import annotations

from pathlib import Path


def _export(net, path) -> Path:
    from trainer.export import export_onnx

    return export_onnx(net, path)


def compact(path) -> Path:
    """The shipped derain architecture: compact depthwise-separable generator, ngf 16, 9 blocks."""
    from trainer.networks import build_generator

    return _export(build_generator(kind="mobile", ngf=16, n_blocks=9, norm="none", skips=True,
                                   residual=True), path)


def resnet9(path) -> Path:
    """A compute-heavy generator: the CycleGAN paper's ResNet-9, ngf 64."""
    from trainer.networks import build_generator

    return _export(build_generator(kind="resnet", ngf=64, n_blocks=9), path)


def identity(path) -> Path:
    """output = input: what the pipeline costs around a model that costs nothing."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return Path(path)
