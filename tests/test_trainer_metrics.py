import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from trainer import metrics as M  # noqa: E402

DATA = Path(os.environ.get("STREAMGAN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RAIN12 = DATA / "bench" / "Rain12"


@pytest.mark.skipif(not (RAIN12 / "rainy").is_dir(), reason="Rain12 not available here")
def test_rain12_do_nothing_row():
    from trainer.evaluate import rain12_scores

    r = rain12_scores(None, RAIN12)
    assert r["n"] == 12
    assert round(r["input_psnr"], 2) == 30.14
    assert round(r["input_ssim"], 4) == 0.8554
    assert r["psnr"] == r["input_psnr"]


def _rand(seed, h=96, w=128):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_psnr_ssim_identity_and_order():
    a = _rand(0)
    assert M.psnr_y(a, a) == float("inf")
    assert M.ssim_y(a, a) == pytest.approx(1.0)
    noisy = np.clip(a.astype(int) + np.random.default_rng(1).integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(a.astype(int) + np.random.default_rng(1).integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    assert M.psnr_y(noisy, a) > M.psnr_y(noisier, a)
    assert M.ssim_y(noisy, a) > M.ssim_y(noisier, a)


def test_psnr_y_uses_matlab_luma():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[..., 1] = 255  # Y differs by 128.553 / 255 on every pixel
    assert M.psnr_y(a, b) == pytest.approx(10 * np.log10(1 / (128.553 / 255) ** 2))


def test_colour_aligned_psnr_takes_out_exposure_but_not_content():
    """Another camera's exposure (gain and offset) costs plain Y-PSNR but not the colour-aligned one; a
    change to what the scene shows (a blotch, as a drop leaves) costs both."""
    a = _rand(3).astype(float) * 0.6 + 40
    other_camera = (a * 0.6 + 70).astype(np.uint8)
    a = a.astype(np.uint8)
    assert M.psnr_y(other_camera, a) < 25 < 45 < M.psnr_y_colour_aligned(other_camera, a)
    blotch = other_camera.copy()
    blotch[20:60, 30:90] = 255
    assert M.psnr_y_colour_aligned(blotch, a) < 25
    flat = M.psnr_y_colour_aligned(np.full_like(a, 7), a)  # nothing to fit a gain to: the best constant
    assert flat == pytest.approx(10 * np.log10(1 / M.rgb_to_y(a).var()))


def test_ssim_subsamples_large_images():
    a = _rand(2, 400, 600)
    b = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    assert 0 < M.ssim_y(a, b) < 1


def _scene(h=120, w=160):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(np.sin(xx / 5) + 1) * 100, (np.cos(yy / 7) + 1) * 100, (xx + yy) % 255], -1)
    return img.astype(np.uint8)


def test_structure_score_ignores_brightness_but_not_structure():
    a = _scene()
    dark = (a * 0.25).astype(np.uint8)
    assert M.structure_score(a, dark) > 0.9
    assert M.structure_score(a, _rand(3, *a.shape[:2])) < 0.2


def test_night_distance_orders_sets():
    a = [_scene()]
    dark = [(_scene() * 0.2).astype(np.uint8)]
    darker = [(_scene() * 0.1).astype(np.uint8)]
    assert M.night_distance(dark, dark) < 0.05 * M.night_distance(a, dark)
    assert M.night_distance(darker, dark) < M.night_distance(a, dark)


def test_flicker():
    f = [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 10, np.uint8), np.zeros((4, 4, 3), np.uint8)]
    assert M.flicker(f) == pytest.approx(10.0)


def test_night_distance_gives_each_reference_set_an_equal_share():
    """A clip of many frames does not outweigh a set of a few stills: outputs half like each set are as near
    to the two sets pooled by set as outputs like one set are far from them."""
    from trainer import metrics as M

    rng = np.random.default_rng(0)
    dark = [rng.integers(0, 20, (64, 64, 3), dtype=np.uint8) for _ in range(12)]
    lit = [rng.integers(100, 200, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    half = dark[:2] + lit
    by_set = M.night_distance(half, {"clip": dark, "stills": lit})
    pooled = M.night_distance(half, dark + lit)
    assert by_set < 0.5 * pooled
    assert M.night_distance(dark, {"clip": dark, "stills": lit}) > 3 * by_set
