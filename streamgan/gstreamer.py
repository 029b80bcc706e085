"""streamgan inside GStreamer pipelines: what the ``streamgan`` element needs apart from GStreamer.

The element itself (``streamgan/gst/python/streamgan_gst.py``) is loaded by GStreamer's Python
plugin loader, which runs the system's Python; ``streamgan gst-env`` prints the exports that let
that interpreter find the element and import streamgan (and numpy, PyAV, OpenVINO) from the
environment streamgan is installed in. This module holds the parts that do not need GStreamer:
the raw-video layouts the element takes, converted to and from RGB with FFmpeg's swscale (as the
command line converts), and the environment text. See docs/GSTREAMER.md.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import sys
import sysconfig
from pathlib import Path

import av
import numpy as np

# GStreamer raw format -> FFmpeg pixel format
FORMATS = {"RGB": "rgb24", "BGR": "bgr24", "RGBx": "rgb0", "BGRx": "bgr0", "I420": "yuv420p",
           "NV12": "nv12"}
PLUGIN_DIR = Path(__file__).resolve().parent / "gst"  # holds python/streamgan_gst.py
SYSTEM_PYTHON = "/usr/bin/python3"


def _planes(data, offsets, strides, heights) -> list[np.ndarray]:
    """The planes of one raw frame as 2-D views (rows of ``stride`` bytes, padding included)."""
    src = np.frombuffer(data, np.uint8)
    return [src[o:o + s * h].reshape(h, s) for o, s, h in zip(offsets, strides, heights)]


def to_rgb(data, fmt: str, width: int, height: int, offsets, strides) -> np.ndarray:
    """One raw frame (GStreamer's layout: plane offsets and strides in bytes) -> H x W x 3 RGB.
    NV12 is read as I420 (its chroma de-interleaved), which swscale converts more exactly."""
    frame = av.VideoFrame(width, height, "yuv420p" if fmt == "NV12" else FORMATS[fmt])
    heights = [p.height for p in frame.planes]
    planes = _planes(data, offsets, strides, heights[:len(offsets)])
    if fmt == "NV12":
        cw = frame.planes[1].width
        uv = planes[1][:, :2 * cw]
        planes = [planes[0], uv[:, 0::2], uv[:, 1::2]]
    for plane, src in zip(frame.planes, planes):
        dst = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        row = min(src.shape[1], plane.line_size)
        dst[:, :row] = src[:, :row]
    return frame.to_ndarray(format="rgb24")


def from_rgb(image: np.ndarray, fmt: str, size: int, offsets, strides) -> bytes:
    """H x W x 3 RGB -> one raw frame of ``size`` bytes in GStreamer's layout."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    if fmt != "RGB":
        frame = frame.reformat(format="yuv420p" if fmt == "NV12" else FORMATS[fmt])
    src = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size) for p in frame.planes]
    if fmt == "NV12":
        cw = frame.planes[1].width
        uv = np.empty((frame.planes[1].height, 2 * cw), np.uint8)
        uv[:, 0::2], uv[:, 1::2] = src[1][:, :cw], src[2][:, :cw]
        src = [src[0], uv]
    out = np.zeros(size, np.uint8)
    for dst, plane in zip(_planes(out, offsets, strides, [p.shape[0] for p in src]), src):
        row = min(dst.shape[1], plane.shape[1])
        dst[:, :row] = plane[:, :row]
    return out.tobytes()


def to_i420(data, fmt: str, width: int, height: int, offsets, strides) -> np.ndarray:
    """One raw I420 or NV12 frame of an even size -> H*3/2 x W I420 (Y, then U and V), as
    ``Translator.translate_i420`` takes it: no colour conversion."""
    cw, ch = width // 2, height // 2
    if fmt == "I420":
        y, u, v = _planes(data, offsets, strides, [height, ch, ch])
        u, v = u[:, :cw], v[:, :cw]
    else:
        y, uv = _planes(data, offsets, strides, [height, ch])
        u, v = uv[:, 0:2 * cw:2], uv[:, 1:2 * cw:2]
    return np.concatenate([y[:, :width].ravel(), u.ravel(), v.ravel()]).reshape(
        height * 3 // 2, width)


def from_i420(frame: np.ndarray, fmt: str, size: int, offsets, strides) -> bytes:
    """H*3/2 x W I420 -> one raw I420 or NV12 frame of ``size`` bytes in GStreamer's layout."""
    height, width = frame.shape[0] * 2 // 3, frame.shape[1]
    cw, ch = width // 2, height // 2
    flat = frame.ravel()
    y = flat[:width * height].reshape(height, width)
    u = flat[width * height:width * height + cw * ch].reshape(ch, cw)
    v = flat[width * height + cw * ch:].reshape(ch, cw)
    out = np.zeros(size, np.uint8)
    if fmt == "I420":
        for dst, src in zip(_planes(out, offsets, strides, [height, ch, ch]), (y, u, v)):
            dst[:, :src.shape[1]] = src
    else:
        dy, duv = _planes(out, offsets, strides, [height, ch])
        dy[:, :width] = y
        duv[:, 0:2 * cw:2], duv[:, 1:2 * cw:2] = u, v
    return out.tobytes()


def env_lines(system_python: str = SYSTEM_PYTHON) -> list[str]:
    """Shell exports that let the system GStreamer load the element and import streamgan from
    this environment (``eval "$(streamgan gst-env)"``)."""
    paths = dict.fromkeys([str(Path(__file__).resolve().parent.parent),
                           sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                           *_gi_dir(system_python)])
    pythonpath = os.pathsep.join(paths)
    # a registry of its own: GStreamer's default one may have been written by a process that did
    # not see this plugin path, and it then never looks for the element again
    key = hashlib.sha256(f"{PLUGIN_DIR}\0{pythonpath}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamgan"
    cache.mkdir(parents=True, exist_ok=True)
    return [f"export GST_PLUGIN_PATH={shlex.quote(str(PLUGIN_DIR))}"
            '${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}',
            f"export PYTHONPATH={shlex.quote(pythonpath)}" '${PYTHONPATH:+:$PYTHONPATH}',
            f"export GST_REGISTRY={shlex.quote(str(cache / f'gst-registry-{key}.bin'))}"]


@functools.lru_cache(maxsize=None)
def _loader_python(system_python: str) -> tuple[tuple[int, ...], str] | None:
    """The GStreamer loader's Python, asked once: (its version, the folder holding its GObject
    bindings, '' without them); None when it does not run."""
    import subprocess

    code = ("import sys, os\nprint(*sys.version_info[:2])\ntry:\n    import gi\n"
            "    print(os.path.dirname(os.path.dirname(gi.__file__)))\nexcept ImportError:\n"
            "    print()")
    try:
        r = subprocess.run([system_python, "-c", code], capture_output=True, text=True,
                           timeout=30)
        version, gi_dir = (r.stdout.splitlines() + ["", ""])[:2]
        return tuple(int(v) for v in version.split()), gi_dir.strip()
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def _gi_dir(system_python: str) -> list[str]:
    """Where the system Python's GObject bindings are. The loader's embedded Python takes its
    prefix from the first python3 on PATH, an active virtual environment's, and would not find
    them there; they go last, after this environment's packages."""
    found = _loader_python(system_python)
    return [found[1]] if found and found[1] else []


def loader_python_mismatch(system_python: str = SYSTEM_PYTHON) -> str:
    """'' when the GStreamer loader's Python can import this environment's compiled packages
    (same major.minor version), else why not."""
    found = _loader_python(system_python)
    if found is None or len(found[0]) != 2:
        return f"{system_python} not found: GStreamer's Python plugin loader runs it"
    theirs, ours = found[0], sys.version_info[:2]
    if theirs != ours:
        return (f"GStreamer's Python loader runs Python {theirs[0]}.{theirs[1]} ({system_python}) "
                f"and streamgan is installed for {ours[0]}.{ours[1]}: install streamgan in an "
                f"environment of Python {theirs[0]}.{theirs[1]}")
    return ""
