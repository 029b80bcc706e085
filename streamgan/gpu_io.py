"""GPU video I/O where FFmpeg allows it: NVDEC decoding and NVENC encoding through PyAV.

``pick_decoder()`` and ``pick_encoder()`` say what to use and why, in one line each:

* decoding: PyAV's ``hwaccel=HWAccel("cuda", allow_software_fallback=True)`` when an NVIDIA driver
  is loaded and a CUDA device can really be opened by FFmpeg (probed once on a tiny clip);
  frames are downloaded to system memory, so the rest of the pipeline is unchanged;
* encoding: ``h264_nvenc`` / ``hevc_nvenc`` when the encoder is compiled into PyAV's FFmpeg
  (``av.codecs_available``), a driver is loaded, the GPU has an NVENC engine at all (data-centre
  GPUs such as the A100, H100 and H200 have NVDEC but no NVENC), and opening a session succeeds;
  ``libx264`` / ``libx265`` otherwise.

Listing in ``av.codecs_available`` is not enough: PyAV's wheels ship NVENC/NVDEC code that fails
only when opened on a machine without a (recent enough) driver, so both picks probe. Probes are
cached for the process. Nothing here imports torch.

What PyAV's software fallback covers, and what it does not (PyAV 14.1+, ``av/video/codeccontext``):

* ``allow_software_fallback=True`` only covers a stream whose codec has no hardware config
  (mjpeg, prores, ...). When the CUDA *device* cannot be created at open time (NVDEC sessions
  exhausted by many cameras, a driver problem) ``av.open`` raises, with an errno such as EPERM
  that reads like "permission denied" on the user's file. ``open_input`` retries such an open in
  software with one notice; a file that fails in software too reports its own error.
* ``codec_context.is_hwaccel`` only says that a device context is attached. A stream NVDEC cannot
  decode (10-bit H.264, 4:2:2, some profiles) is silently decoded in software by FFmpeg's
  ``get_format`` fallback. After the first frame, the context's pixel format is ``cuda`` only for
  frames really decoded on the GPU: ``decoder_in_use`` and ``report_decoder`` read that.
"""

from __future__ import annotations

import functools
import glob
import io
import logging
import re
from dataclasses import dataclass
from fractions import Fraction

import av

from .errors import UsageError

log = logging.getLogger("streamgan")
HW_ENCODERS = {"h264": "h264_nvenc", "h265": "hevc_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"}
SW_ENCODERS = {"h264": ("libx264",), "h265": ("libx265",), "hevc": ("libx265",),
               "av1": ("libsvtav1", "libaom-av1")}
PREFER = ("auto", "hardware", "software")
# GPUs with NVDEC but no NVENC engine (NVIDIA's video encode/decode support matrix)
NO_NVENC = re.compile(r"\b(A100|A800|A30|H100|H800|H200|GH200)\b", re.I)
_noticed: set[str] = set()


def _notice(text: str) -> None:
    if text not in _noticed:
        _noticed.add(text)
        log.warning("notice: %s", text)


def _driver_present() -> bool:
    from .engines import nvidia_driver_present

    return nvidia_driver_present()


def _codecs() -> set[str]:
    return set(av.codecs_available)


def _hwaccel():
    """PyAV's ``av.codec.hwaccel`` module, None before PyAV 14.1 (which has no hwaccel)."""
    try:
        from av.codec import hwaccel
    except ImportError:
        return None
    return hwaccel


def _hwdevices() -> list[str] | None:
    """Hardware device types this FFmpeg was built with; None when PyAV has no hwaccel at all."""
    hw = _hwaccel()
    return None if hw is None else list(hw.hwdevices_available())


def _gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs the driver lists (``/proc/driver/nvidia/gpus/*/information``),
    read without CUDA or torch; [] when unknown."""
    names = []
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(info) as f:
                for line in f:
                    if line.startswith("Model:"):
                        names.append(line.split(":", 1)[1].strip())
        except OSError:
            pass
    return names


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
    hw = _hwaccel()
    if hw is None:
        return "this PyAV has no hwaccel (PyAV 14.1 or newer needed)"
    HWAccel = hw.HWAccel
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
            if decoded_in_hardware(stream) is not True:
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
    gpus = _gpu_names() if hw in codecs and _driver_present() else []
    if hw not in codecs:
        why = f"{hw} is not compiled into this FFmpeg"
    elif not _driver_present():
        why = "no NVIDIA driver"
    elif gpus and all(NO_NVENC.search(g) for g in gpus):
        why = (f"the {gpus[0]} has no NVENC video encoder (data-centre GPUs such as the A100, "
               f"H100 and H200 decode on NVDEC but cannot encode); encoding on the CPU")
    else:
        why = _probe_encoder(hw)
        if why is None:
            return EncoderChoice(hw, True, "NVIDIA GPU encoder")
        if any(NO_NVENC.search(g) for g in gpus):
            why += "; some of this machine's GPUs have no NVENC"
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
        # allow_software_fallback: streams whose codec has no CUDA config (mjpeg, prores, ...)
        # still decode; a device that cannot be opened is handled by ``open_input``.
        return {"hwaccel": _hwaccel().HWAccel(self.device_type, allow_software_fallback=True)}

    def describe(self) -> str:
        return f"decoder {'cuda (NVDEC)' if self.hardware else 'software'} ({self.reason})"


def pick_decoder(prefer: str = "auto") -> DecoderChoice:
    """CUDA hardware decoding when FFmpeg can open the device here, else software decoding."""
    _check_prefer(prefer)
    if prefer == "software":
        return DecoderChoice(None, "software decoding requested")
    devices = _hwdevices()
    if not _driver_present():
        why = "no NVIDIA driver"
    elif devices is None:
        why = f"PyAV {av.__version__} has no hwaccel (PyAV 14.1 or newer needed)"
    elif "cuda" not in devices:
        why = "this FFmpeg has no CUDA hwaccel"
    else:
        why = _probe_decoder("cuda")
        if why is None:
            return DecoderChoice("cuda", "NVIDIA GPU decoder, software fallback per stream")
    if prefer == "hardware":
        raise UsageError(f"hardware decoding is not available: {why}")
    return DecoderChoice(None, why)


# FFmpeg errors that are about the input itself: never retried in software
_FILE_ERRORS = tuple(getattr(av.error, n) for n in ("FileNotFoundError", "InvalidDataError", "EOFError",
                                                    "ExitError", "HTTPError", "HTTPNotFoundError")
                     if hasattr(av.error, n))


def open_input(path, prefer: str = "auto", **open_kwargs):
    """``av.open(path, **open_kwargs)`` decoding through NVDEC where ``pick_decoder(prefer)`` says
    so. When the CUDA device cannot be created for this input (NVDEC exhausted, a driver problem;
    PyAV raises at open time, often as EPERM), the input is opened again in software with one
    notice; if that fails too, it is the file's own error that is raised. Under
    ``prefer="hardware"`` a device failure is a ``UsageError``."""
    choice = pick_decoder(prefer)
    if not choice.hardware:
        return av.open(path, **open_kwargs)
    try:
        return av.open(path, **open_kwargs, **choice.open_kwargs())
    except _FILE_ERRORS:
        raise
    except (av.FFmpegError, OSError, RuntimeError, NotImplementedError) as e:
        device_error = _err(e)
    container = av.open(path, **open_kwargs)  # the file's own error, if it has one
    why = f"the CUDA decoder could not be opened ({device_error}; are all NVDEC sessions in use?)"
    if prefer == "hardware":
        container.close()
        raise UsageError(f"hardware decoding is not available: {why}")
    _notice(f"{why}; decoding in software")
    return container


def decoded_in_hardware(stream) -> bool | None:
    """After the first decoded frame: True when it came from the GPU decoder, False when it was
    decoded in software (no device context, or FFmpeg's silent fallback for a stream NVDEC cannot
    decode, such as 10-bit H.264), None for a hardware context whose pixel format is unknown."""
    ctx = stream.codec_context
    if not getattr(ctx, "is_hwaccel", False):
        return False
    fmt = getattr(ctx, "pix_fmt", None)
    if fmt is None:
        return None
    return fmt == "cuda"


def decoder_in_use(stream) -> str:
    """After the first frame: what really decodes this video stream, e.g. 'h264 on cuda (NVDEC)',
    'h264 yuv420p10le in software (NVDEC cannot decode this stream)' or 'hevc (software)'."""
    ctx = stream.codec_context
    hw = decoded_in_hardware(stream)
    if hw:
        return f"{ctx.name} on cuda (NVDEC)"
    if hw is None:
        return f"{ctx.name} on a cuda context (not known whether NVDEC decoded it)"
    if getattr(ctx, "is_hwaccel", False):
        return f"{ctx.name} {ctx.pix_fmt} in software (NVDEC cannot decode this stream)"
    return f"{ctx.name} (software)"


def report_decoder(stream, name: str = "input") -> str:
    """Call after the first frame of a stream opened with a hardware decoder: logs (once) when
    FFmpeg fell back to software, and returns ``decoder_in_use``."""
    used = decoder_in_use(stream)
    if getattr(stream.codec_context, "is_hwaccel", False) and decoded_in_hardware(stream) is False:
        _notice(f"{name}: {used}; decoding on the CPU")
    else:
        log.info("%s: decoder %s", name, used)
    return used


def describe_video_io(codec: str = "h264", prefer: str = "auto") -> str:
    """One line for logs and ``streamgan bench``: decoder and encoder picked here, and why."""
    return f"{pick_decoder(prefer).describe()}; {pick_encoder(codec, prefer).describe()}"
