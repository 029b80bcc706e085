"""Frames for training: folders of images (the CycleGAN trainA/trainB/testA/testB layout is just four
folders), single images, and video files (frames sampled straight from the video with PyAV).

All frames are decoded once, kept in memory as uint8 CHW tensors (longer side at most ``max_side``),
and batches are cut from them with a random resize-crop-flip driven by a seeded ``torch.Generator``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .options import DataError

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif", ".ts"}


def list_sources(sources: list[str], exclude: list[str] = (), field: str = "data") -> list[Path]:
    """Expand folders (recursively) into image/video files. Missing or empty sources raise DataError."""
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if not p.exists():
            raise DataError(f"{field}: data source not found: {p}")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXT | VIDEO_EXT)
            if not found:
                raise DataError(f"{field}: data folder {p} holds no images or videos")
            files += found
        else:
            files.append(p)
    files = [f for f in files if not any(x in str(f) for x in exclude)]
    if not files:
        raise DataError(f"{field}: no images or videos left in {sources} after exclusions")
    return files


def _fit(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.BICUBIC))


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 HxWx3; an undecodable file raises DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from None


def read_video(path: Path, stride: int = 1, limit: int | None = None) -> list[np.ndarray]:
    import av

    frames = []
    try:
        with av.open(str(path)) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i % stride == 0:
                    frames.append(fr.to_ndarray(format="rgb24"))
                    if limit and len(frames) >= limit:
                        break
    except (av.error.FFmpegError, OSError) as e:
        raise DataError(f"cannot decode video {path}: {e}") from None
    if not frames:
        raise DataError(f"video {path} has no decodable frames")
    return frames


def load_frames(files: list[Path], max_side: int = 1280, video_stride: int = 5) -> list[torch.Tensor]:
    out = []
    for f in files:
        arrays = read_video(f, video_stride) if f.suffix.lower() in VIDEO_EXT else [read_image(f)]
        out += [torch.from_numpy(np.array(_fit(a, max_side))).permute(2, 0, 1) for a in arrays]
    return out


def _luma(img: torch.Tensor) -> torch.Tensor:
    """uint8 CHW -> luma in [0, 1] (HxW)."""
    x = img.float() / 255
    return 0.2126 * x[0] + 0.7152 * x[1] + 0.0722 * x[2]


def looks_like_day(img: torch.Tensor, sky: float = 0.58) -> bool:
    """A bright upper third (a daylit sky) in a frame that should be night (uint8 CHW)."""
    return float(_luma(img)[: img.shape[1] // 3].mean()) > sky


def normalise_exposure(img: torch.Tensor, target: float) -> torch.Tensor:
    """Darken a brightly exposed night frame (uint8 CHW) so its median linear luma is ``target``.

    Night cameras with strong auto-gain (the FLIR dashcam) record night as a grey dusk; the scale is
    applied in linear light with highlights kept (lamps and headlights stay at full brightness):
    ``lin' = k lin + (1 - k) lin^6``. Frames already at or below ``target`` are left as they are."""
    from .imaging import linear_to_srgb, srgb_to_linear

    lin = srgb_to_linear(img.float() / 255)
    med = float(srgb_to_linear(_luma(img)).median())
    if med <= target:
        return img
    k = target / med
    out = linear_to_srgb(k * lin + (1 - k) * lin ** 6)
    return (out * 255 + 0.5).clamp(0, 255).to(torch.uint8)


class FramePool:
    """Random resize-crop-flip batches from in-memory frames; returns float NCHW in [0, 1]."""

    def __init__(self, frames: list[torch.Tensor], crop: int, scale: tuple[float, float] = (0.5, 1.0)):
        if not frames:
            raise DataError("no frames to train on")
        self.frames, self.crop, self.scale = frames, crop, scale

    def __len__(self) -> int:
        return len(self.frames)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        out = []
        for _ in range(n):
            img = self.frames[int(torch.randint(len(self.frames), (), generator=gen))]
            _, h, w = img.shape
            lo, hi = self.scale
            s = lo + (hi - lo) * float(torch.rand((), generator=gen))
            s = max(s, self.crop / min(h, w))  # the crop must fit
            side = min(int(round(self.crop / s)), h, w)
            y = int(torch.randint(h - side + 1, (), generator=gen))
            x = int(torch.randint(w - side + 1, (), generator=gen))
            patch = img[:, y:y + side, x:x + side].float().unsqueeze(0) / 255
            if side != self.crop:
                patch = F.interpolate(patch, size=(self.crop, self.crop), mode="bilinear",
                                      antialias=side > self.crop, align_corners=False).clamp(0, 1)
            if float(torch.rand((), generator=gen)) < 0.5:
                patch = patch.flip(-1)
            out.append(patch)
        return torch.cat(out)


def to_model(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]"""
    return x * 2 - 1


def from_model(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)
