"""streamgan: translate driving video with GAN generators (derain, day2night).

    import streamgan
    streamgan.Translator("derain").translate_video("dashcam.mp4", "dashcam.derain.mp4")
    for frame in streamgan.stream("dashcam.mp4", "day2night"):
        ...  # frame.image (H x W x 3 uint8 RGB), frame.pts, frame.time

Importing streamgan never imports torch; the torch and TensorRT backends do when chosen.
streamgan sends nothing over the network: importing OpenVINO sends a usage event to Intel
(its model converter's telemetry) unless its telemetry package cannot be imported, so it is kept
from being imported here (OpenVINO and NNCF then skip telemetry, as they do where the package
is missing); ``STREAMGAN_OPENVINO_TELEMETRY=1`` leaves OpenVINO's choice alone.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("STREAMGAN_OPENVINO_TELEMETRY") != "1" and "openvino" not in sys.modules:
    sys.modules.setdefault("openvino_telemetry", None)  # import openvino_telemetry -> ImportError

from .card import ModelCard
from .errors import StreamganError
from .io import EncodeOptions, Frame, probe
from .translator import Result, Translator

__version__ = "0.1.0"
__all__ = ["Translator", "translate_video", "translate_many", "stream", "list_plugins", "probe",
           "ModelCard",
           "EncodeOptions", "Frame", "Result", "StreamganError", "__version__"]


def translate_video(src, dst, task: str = "derain", *, backend: str = "auto",
                    precision: str = "auto", night_exposure: str | None = None, **kwargs) -> Result:
    """Translate ``src`` into ``dst`` with one task; see ``Translator.translate_video``
    (``night_exposure``: a day-to-night model's look, e.g. "dashcam" or "bright")."""
    return Translator(task, backend, precision, night_exposure=night_exposure).translate_video(
        src, dst, **kwargs)


def translate_many(inputs, task: str = "derain", out_dir="out", **kwargs):
    """Translate many videos (files, folders, glob patterns) into ``out_dir`` in worker
    processes or on a Ray cluster (``cluster=``); returns a per-file ``BatchReport``. See
    ``streamgan.batch.translate_many`` and docs/BATCH.md."""
    from .batch import translate_many as run

    return run(inputs, task, out_dir, **kwargs)


def stream(src, task: str = "derain", *, backend: str = "auto", precision: str = "auto",
           night_exposure: str | None = None, **kwargs):
    """Yield translated frames with their timestamps; see ``Translator.stream``."""
    return Translator(task, backend, precision, night_exposure=night_exposure).stream(src, **kwargs)


def list_plugins() -> dict:
    """Installed task name -> plugin folder."""
    from .plugins import discover

    return discover()
