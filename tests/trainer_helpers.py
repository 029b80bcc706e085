"""Shared helpers for the trainer tests (tiny images, tiny configs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def make_images(folder: Path, n: int = 3, w: int = 72, h: int = 56, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = np.zeros((h, w, 3), np.float32)
        img[..., 0] = xx / w
        img[..., 1] = yy / h
        img[..., 2] = 0.5 + 0.3 * np.sin(xx / (3 + i))
        for _ in range(4):
            y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
            img[y0:y0 + 10, x0:x0 + 10] = rng.uniform(0, 1, 3)
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def tiny_config(tmp: Path, **over) -> dict:
    day = make_images(tmp / "day", 3)
    cfg = {
        "name": "tiny", "task": "derain", "mode": "paired", "seed": 0,
        "data": {"train_a": [str(day)], "synth": "rain", "crop": 32, "scale": [0.6, 1.0], "batch_size": 2},
        "model": {"generator": {"kind": "mobile", "ngf": 4, "n_blocks": 1, "norm": "none", "residual": True},
                  "discriminator": {"ndf": 4, "n_layers": 2}},
        "loss": {"lambda_l1": 1.0, "lambda_gan": 0.0},
        "optim": {"lr": 2e-3, "beta1": 0.9, "steps": 20},
        "train": {"out": str(tmp / "run"), "threads": 1, "log_every": 5, "sample_every": 10,
                  "checkpoint_every_s": 1000, "progress": False},
        "export": {"plugin_dir": str(tmp / "plugin"), "title": "tiny", "direction": "a -> b"},
        "eval": {"kind": "derain"},
    }
    for key, val in over.items():
        node = cfg
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = val
    return cfg


def write_config(tmp: Path, cfg: dict, name: str = "cfg.yaml") -> Path:
    p = tmp / name
    p.write_text(yaml.safe_dump(cfg))
    return p
