"""GPU video I/O where FFmpeg allows it: NVDEC decoding and NVENC encoding through PyAV.

``pick_decoder()`` and ``pick_encoder()`` say what to use and why, in one line each:

* decoding: PyAV's ``hwaccel=HWAccel("cuda", allow_software_fallback=True)`` when an NVIDIA driver
  is loaded and a CUDA device can really be opened by FFmpeg (probed once on a tiny clip);
  frames are downloaded to system memory, so the rest of the pipeline is unchanged, and codecs
  NVDEC cannot handle fall back to software inside FFmpeg;
* encoding: ``h264_nvenc`` / ``hevc_nvenc`` when the encoder is compiled into PyAV's FFmpeg
  (``av.codecs_available``), a driver is loaded, and opening a session succeeds; ``libx264`` /
  ``libx265`` otherwise.

Listing in ``av.codecs_available`` is not enough: PyAV's wheels ship NVENC/NVDEC code that fails
only when opened on a machine without a (recent enough) driver, so both picks probe. Probes are
cached for the process. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from fractions import Fraction

import av

from .errors import UsageError

HW_ENCODERS = {"h264": "h264_nvenc", "h265": "hevc_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"}
SW_ENCODERS = {"h264": ("libx264",), "h265": ("libx265",), "hevc": ("libx265",),
               "av1": ("libsvtav1", "libaom-av1")}
PREFER = ("auto", "hardware", "software")


def _driver_present() -> bool:
    from .engines import nvidia_driver_present

    return nvidia_driver_present()


def _codecs() -> set[str]:
    return set(av.codecs_available)


def _hwdevices() -> list[str]:
    from av.codec.hwaccel import hwdevices_available

    return list(hwdevices_available())


def _err(e: Exception) -> str:
    return (str(e).strip() or type(e).__name__).splitlines()[0]


@functools.lru_cache(maxsize=None)
def _probe_encoder(name: str) -> str | None:
    """None when ``name`` opens an encoding session here, else the reason it does not."""
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base, ctx.framerate = Fraction(1, 25), Fraction(25)
        ctx.open()
        del ctx
        return None
    except Exception as e:  # FFmpegError (no device, driver too old, session limit), OSError
        return f"{name} cannot open a session ({_err(e)})"


@functools.lru_cache(maxsize=None)
def _probe_decoder(device_type: str = "cuda") -> str | None:
    """None when FFmpeg can decode a tiny H.264 clip through ``device_type``, else why not."""
    from av.codec.hwaccel import HWAccel

    try:
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            s = out.add_stream("libx264" if "libx264" in _codecs() else "h264", rate=25)
            s.width, s.height, s.pix_fmt = 128, 128, "yuv420p"
            import numpy as np

            for i in range(2):
                frame = av.VideoFrame.from_ndarray(np.full((128, 128, 3), 60 * i, np.uint8), format="rgb24")
                out.mux(s.encode(frame))
            out.mux(s.encode())
        buf.seek(0)
    except Exception as e:
        return f"cannot make a probe clip ({_err(e)})"
    try:
        with av.open(buf, hwaccel=HWAccel(device_type, allow_software_fallback=False)) as c:
            stream = c.streams.video[0]
            n = sum(1 for _ in c.decode(stream))
            if not n:
                return f"{device_type} decoding produced no frames"
            if not getattr(stream.codec_context, "is_hwaccel", True):
                return f"FFmpeg did not use {device_type} for H.264"
        return None
    except Exception as e:
        return f"{device_type} device cannot be opened by FFmpeg ({_err(e)})"


def _check_prefer(prefer: str) -> None:
    if prefer not in PREFER:
        raise UsageError(f"unknown hardware preference '{prefer}'; choose {', '.join(PREFER)}")


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder to pass to ``OutputContainer.add_stream`` and why it was chosen."""

    name: str
    hardware: bool
    reason: str

    def describe(self) -> str:
        return f"encoder {self.name} ({self.reason})"

    def options(self, crf: int | None = None, preset: str | None = None) -> dict[str, str]:
        """Codec options of similar meaning for either encoder: ``crf`` (x264 scale; NVENC's
        constant-quality ``cq``) and ``preset`` (x264 names; NVENC takes p1..p7, default p4)."""
        if self.hardware:
            opts = {"preset": preset if preset and preset[:1] == "p" and preset[1:].isdigit() else "p4",
                    "rc": "vbr", "b": "0"}
            if crf is not None:
                opts["cq"] = str(crf)
            return opts
        opts = {}
        if preset is not None:
            opts["preset"] = preset
        elif self.name in ("libx264", "libx265"):
            opts["preset"] = "veryfast"
        if crf is not None:
            opts["crf"] = str(crf)
        return opts


def pick_encoder(codec: str = "h264", prefer: str = "auto") -> EncoderChoice:
    """NVENC for ``codec`` (h264 | h265 | hevc | av1) when it works here, else the software encoder
    (libx264, libx265, libsvtav1 or libaom-av1). Any other name is an FFmpeg encoder, used as is.

    ``prefer="hardware"`` raises ``UsageError`` when NVENC cannot be used; ``"software"`` skips it.
    """
    _check_prefer(prefer)
    codecs = _codecs()
    hw = HW_ENCODERS.get(codec)
    if hw is None:
        if prefer == "hardware":
            raise UsageError(f"hardware encoding is not available: no NVENC encoder for '{codec}'")
        return EncoderChoice(codec, codec.endswith("_nvenc"), "encoder named explicitly")
    candidates = SW_ENCODERS[codec]
    sw = next((c for c in candidates if c in codecs), candidates[0])
    if prefer == "software":
        return EncoderChoice(sw, False, "software encoding requested")
    if hw not in codecs:
        why = f"{hw} is not compiled into this FFmpeg"
    elif not _driver_present():
        why = "no NVIDIA driver"
    else:
        why = _probe_encoder(hw)
        if why is None:
            return EncoderChoice(hw, True, "NVIDIA GPU encoder")
    if prefer == "hardware":
        raise UsageError(f"hardware encoding is not available: {why}")
    if sw not in codecs:
        raise UsageError(f"encoder '{sw}' is not in this FFmpeg build and {why}")
    return EncoderChoice(sw, False, why)


@dataclass(frozen=True)
class DecoderChoice:
    """Whether to decode through a hardware device; ``open_kwargs()`` goes to ``av.open``."""

    device_type: str | None
    reason: str

    @property
    def hardware(self) -> bool:
        return self.device_type is not None

    def open_kwargs(self) -> dict:
        if self.device_type is None:
            return {}
        from av.codec.hwaccel import HWAccel

        # allow_software_fallback: streams NVDEC cannot decode (mjpeg, prores, ...) still decode.
        return {"hwaccel": HWAccel(self.device_type, allow_software_fallback=True)}

    def describe(self) -> str:
        return f"decoder {'cuda (NVDEC)' if self.hardware else 'software'} ({self.reason})"


def pick_decoder(prefer: str = "auto") -> DecoderChoice:
    """CUDA hardware decoding when FFmpeg can open the device here, else software decoding."""
    _check_prefer(prefer)
    if prefer == "software":
        return DecoderChoice(None, "software decoding requested")
    if not _driver_present():
        why = "no NVIDIA driver"
    elif "cuda" not in _hwdevices():
        why = "this FFmpeg has no CUDA hwaccel"
    else:
        why = _probe_decoder("cuda")
        if why is None:
            return DecoderChoice("cuda", "NVIDIA GPU decoder, software fallback per stream")
    if prefer == "hardware":
        raise UsageError(f"hardware decoding is not available: {why}")
    return DecoderChoice(None, why)


def decoder_in_use(stream) -> str:
    """After opening: what decodes this video stream, e.g. 'h264 on cuda' or 'hevc (software)'."""
    ctx = stream.codec_context
    hw = getattr(ctx, "is_hwaccel", False)
    return f"{ctx.name} on cuda" if hw else f"{ctx.name} (software)"


def describe_video_io(codec: str = "h264", prefer: str = "auto") -> str:
    """One line for logs and ``streamgan bench``: decoder and encoder picked here, and why."""
    return f"{pick_decoder(prefer).describe()}; {pick_encoder(codec, prefer).describe()}"
