"""Geometry: processing size, padding to the model's multiple, seamless tiles, the array API."""

from __future__ import annotations

import numpy as np
import pytest

from streamgan import Translator
from streamgan.errors import UsageError
from streamgan.frames import plan_size, translate_batch


def test_plan_size():
    assert plan_size(1280, 720) == (1280, 720)
    assert plan_size(1280, 720, "short_side", 360) == (640, 360)
    assert plan_size(720, 1280, "short_side", 360) == (360, 640)  # portrait
    assert plan_size(640, 360, "short_side", 480) == (640, 360)  # never upscales
    assert plan_size(1280, 720, "native", None, size=540) == (960, 540)  # --size wins
    with pytest.raises(UsageError):
        plan_size(100, 100, size=4)


def _shift(batch):
    """A stand-in model that needs sizes divisible by 8 and is not pointwise."""
    assert batch.shape[1] % 8 == 0 and batch.shape[2] % 8 == 0
    return np.roll(batch, 1, axis=2) // 2 + 10


def test_padding_crops_back_exactly():
    frames = np.random.default_rng(0).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    out = translate_batch(lambda b: b.copy(), frames, multiple=8)
    assert out.shape == frames.shape and np.array_equal(out, frames)
    out = translate_batch(_shift, frames, multiple=8)
    assert out.shape == frames.shape


def test_tiles_are_seamless(tiny_generator):
    _, onnx = tiny_generator
    tr = Translator(onnx, backend="openvino", precision="fp32")
    yy, xx = np.mgrid[0:300, 0:420]
    img = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)[None]
    whole = tr.run_batch(img).astype(int)
    tiled = translate_batch(tr.backend.run, img, multiple=4, tile=128, overlap=32).astype(int)
    assert tiled.shape == whole.shape
    # instance norm sees different statistics per tile, so values drift a little; a seam would
    # show as a jump across tile borders larger than the jumps elsewhere
    cols = np.abs(np.diff(tiled[0].mean(axis=(0, 2))))
    assert cols.max() < 3 * np.percentile(cols, 99) + 2
    assert np.abs(tiled - whole).mean() < 12


def test_tiling_identity_is_exact(identity_onnx):
    tr = Translator(identity_onnx, backend="openvino", precision="fp32", tile=64)
    img = np.random.default_rng(2).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    assert np.array_equal(tr.translate(img), img)


def test_translate_rgb_and_bgr(tiny_generator):
    _, onnx = tiny_generator
    img = np.random.default_rng(3).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    rgb = Translator(onnx, backend="openvino", precision="fp32").translate(img)
    bgr = Translator(onnx, backend="openvino", precision="fp32", channels="bgr").translate(
        img[..., ::-1])
    assert np.array_equal(bgr[..., ::-1], rgb)
    single = Translator(onnx, backend="openvino", precision="fp32").translate(img[0])
    assert single.shape == (48, 64, 3)


def test_translate_rejects_bad_arrays(identity_onnx):
    tr = Translator(identity_onnx, backend="openvino")
    with pytest.raises(UsageError, match="uint8"):
        tr.translate(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(UsageError):
        tr.translate(np.zeros((8, 8), np.uint8))
    with pytest.raises(UsageError, match=r"got float32 \(20, 30, 3\)"):  # the shape as given
        tr.translate(np.zeros((20, 30, 3), np.float32))
    with pytest.raises(UsageError, match="frames of one size"):
        tr.translate([np.zeros((32, 32, 3), np.uint8), np.zeros((40, 32, 3), np.uint8)])


@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"batch_size": -1}, {"threads": 0}, {"size": 0}])
def test_translator_refuses_what_the_command_line_refuses(identity_onnx, kw):
    with pytest.raises(UsageError, match="must be a positive integer"):
        Translator(identity_onnx, backend="openvino", **kw)
