"""Video sources and sinks over PyAV (FFmpeg).

``Source`` opens anything FFmpeg reads (files, image sequences, GIFs, network URLs), decodes the
first video stream to RGB frames that keep their presentation timestamps, and hands the audio
packets over untouched. ``Sink`` encodes RGB frames with their original timestamps, copies or
re-encodes the audio, writes to a temporary file beside the target and renames it into place
only when finalised, so an existing file is never left half-overwritten.

Scaling between the source and the model's processing resolution is done by FFmpeg's swscale in
the same pass as the pixel-format conversion (``to_ndarray(width=, height=)`` on decode,
``reformat`` on encode), never as an extra numpy step.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import InputError, OutputError, UsageError

log = logging.getLogger("streamgan")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# audio codecs each output container can carry as-is; anything else is re-encoded
AUDIO_COPY = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le"},
    ".mkv": None,  # Matroska takes any codec
}
AUDIO_FALLBACK = {".webm": "libopus"}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def redact(url: str) -> str:
    """Hide credentials in a URL (``rtsp://user:pass@host`` -> ``rtsp://***@host``)."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", str(url))


@dataclass
class Frame:
    """One decoded frame: RGB pixels plus where it sits in time."""

    image: np.ndarray  # H x W x 3 uint8 RGB (at the processing resolution when scaled)
    pts: int | None
    time_base: Fraction
    index: int
    source: np.ndarray | None = None  # full-resolution original when asked for (compare mode)

    @property
    def time(self) -> float | None:
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass
class VideoInfo:
    path: str
    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    frame_rate: Fraction | None
    time_base: Fraction
    duration: float | None
    frames: int | None
    rotation: int
    audio: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        fps = f"{float(self.frame_rate):.3f} fps" if self.frame_rate else "variable/unknown fps"
        dur = f"{self.duration:.3f} s" if self.duration is not None else "unknown duration"
        out = [
            f"file      {self.path}",
            f"container {self.container}",
            f"video     {self.codec} {self.width}x{self.height} {self.pix_fmt}, {fps}, {dur}",
            f"frames    {self.frames if self.frames else 'unknown (not in header)'}",
            f"rotation  {self.rotation} degrees",
        ]
        out += [f"audio     {a}" for a in self.audio] or ["audio     none"]
        return out


def _is_url(path) -> bool:
    return bool(_URL.match(str(path)))


def _open_input(path, options: dict | None = None, timeout: float | None = None,
                hwaccel: str = "software"):
    """av.open with every failure turned into one clear InputError.

    ``hwaccel``: "auto" decodes on an NVIDIA GPU when FFmpeg can open one (see gpu_io)."""
    path = str(path)
    fmt = None
    opts = dict(options or {})
    if not _is_url(path):
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTS)})")
            exts = {f.suffix.lower() for f in files}
            if len(exts) > 1:
                raise InputError(f"{path}: mixed image types {sorted(exts)}; keep one type")
            path, fmt = str(p / f"*{files[0].suffix}"), "image2"
            opts.setdefault("pattern_type", "glob")
        elif "%" in p.name:
            fmt = "image2"
            if not glob.glob(re.sub(r"%0?\d*d", "*", str(p))):
                raise InputError(f"{path}: no file matches this image-sequence pattern")
        elif not p.exists():
            raise InputError(f"{path}: no such file")
        elif p.stat().st_size == 0:
            raise InputError(f"{path}: file is empty")
        if fmt == "image2":
            opts.setdefault("framerate", "25")
    try:
        extra = {}
        if hwaccel != "software":
            from .gpu_io import pick_decoder

            extra = pick_decoder(hwaccel).open_kwargs()
        return av.open(path, format=fmt, options=opts, timeout=timeout, **extra)
    except av.error.FileNotFoundError:
        raise InputError(f"{redact(path)}: no such file") from None
    except av.error.PermissionError:
        raise InputError(f"{redact(path)}: permission denied") from None
    except (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.DecoderNotFoundError):
        raise InputError(f"{redact(path)}: not a video or image file FFmpeg can read") from None
    except av.error.EOFError:
        raise InputError(f"{redact(path)}: the video has no frames (it ends after its header)") from None
    except av.FFmpegError as e:
        raise InputError(f"{redact(path)}: cannot open ({e.strerror or e})") from None


def _video_stream(container, path):
    if not container.streams.video:
        container.close()
        raise InputError(f"{redact(path)}: has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise InputError(f"{redact(path)}: video codec is not supported by this FFmpeg build")
    return stream


def probe(path) -> VideoInfo:
    """What `streamgan info` prints: container, codec, size, rate, duration, frames, audio."""
    container = _open_input(path)
    try:
        s = _video_stream(container, path)
        cc = s.codec_context
        duration = None
        if s.duration is not None and s.time_base:
            duration = float(s.duration * s.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        rotation = 0
        try:
            first = next(container.decode(s))
            rotation = int(first.rotation or 0)
        except (StopIteration, av.FFmpegError):
            pass
        audio = [
            f"{a.codec_context.name} {a.codec_context.sample_rate} Hz "
            f"{a.codec_context.channels if hasattr(a.codec_context, 'channels') else ''}ch".strip()
            for a in container.streams.audio
        ]
        return VideoInfo(
            path=redact(str(path)), container=container.format.name, codec=cc.name,
            width=cc.width, height=cc.height, pix_fmt=cc.pix_fmt or "?",
            frame_rate=s.average_rate, time_base=s.time_base or Fraction(1, 25),
            duration=duration, frames=s.frames or None, rotation=rotation, audio=audio)
    finally:
        container.close()


class Source:
    """Decodes one input's video as ``Frame``s; collects its audio packets for the sink.

    ``size`` (w, h) asks FFmpeg to scale while converting to RGB. ``start``/``duration`` in
    seconds and ``max_frames`` trim the input. Undecodable packets are skipped and counted in
    ``bad_frames`` rather than ending the run.
    """

    def __init__(self, path, *, size: tuple[int, int] | None = None, start: float = 0.0,
                 duration: float | None = None, max_frames: int | None = None,
                 keep_source: bool = False, options: dict | None = None,
                 timeout: float | None = None, hwaccel: str = "software"):
        self.path = str(path)
        self.container = _open_input(path, options, timeout, hwaccel)
        self.stream = _video_stream(self.container, path)
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        self.width, self.height = cc.width, cc.height
        if not self.width or not self.height:
            self.close()
            raise InputError(f"{redact(path)}: video stream has no frame size (corrupt header?)")
        self.time_base = self.stream.time_base or Fraction(1, 25)
        self.frame_rate = self.stream.average_rate or self.stream.guessed_rate
        self.audio_stream = self.container.streams.audio[0] if self.container.streams.audio else None
        self.size = size
        self.start, self.duration, self.max_frames = start, duration, max_frames
        self.keep_source = keep_source
        self.bad_packets = 0  # packets the decoder rejected
        self.corrupt_frames = 0  # frames decoded with errors (concealed by FFmpeg, kept)
        self.decoded = 0
        self._ended = False  # the whole input was read (not trimmed, not stopped early)
        self.rotation = 0
        self.audio_packets: list = []  # filled while decoding; drained by the sink
        self.expected_frames = self._expected_frames()

    def _expected_frames(self) -> int | None:
        n = self.stream.frames or None
        if n is None and self.container.duration and self.frame_rate:
            n = int(self.container.duration / av.time_base * self.frame_rate)
        if n is not None and (self.start or self.duration) and self.frame_rate:
            left = n - int(self.start * self.frame_rate)
            if self.duration is not None:
                left = min(left, int(round(self.duration * self.frame_rate)))
            n = max(left, 0)
        if self.max_frames is not None:
            n = min(n, self.max_frames) if n is not None else self.max_frames
        return n

    def __iter__(self) -> Iterator[Frame]:
        start_pts = None
        if self.start:
            start_pts = int(self.start / self.time_base)
            try:
                self.container.seek(start_pts, stream=self.stream, backward=True)
            except av.FFmpegError:
                pass  # not seekable: frames before start are dropped below
        end = None if self.duration is None else self.start + self.duration
        streams = [self.stream] + ([self.audio_stream] if self.audio_stream else [])
        index = 0
        try:
            for packet in self.container.demux(streams):
                if packet.stream is self.audio_stream:
                    if packet.dts is not None and self._in_range(packet, end):
                        self.audio_packets.append(packet)
                    continue
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    self.bad_packets += 1
                    continue
                except av.FFmpegError as e:
                    if _is_eof(e):
                        break
                    self.bad_packets += 1
                    continue
                for f in frames:
                    t = f.time
                    if start_pts is not None and f.pts is not None and f.pts < start_pts:
                        continue
                    if end is not None and t is not None and t >= end - 1e-9:
                        return
                    if index == 0:
                        self.rotation = int(f.rotation or 0)
                    self.corrupt_frames += bool(f.is_corrupt)
                    yield self._frame(f, index)
                    index += 1
                    self.decoded = index
                    if self.max_frames is not None and index >= self.max_frames:
                        return
            self._ended = not (self.start or self.duration is not None or self.max_frames)
        except av.FFmpegError as e:
            # a truncated file ends the demux early: keep what was decoded
            if not _is_eof(e):
                self.bad_packets += 1
                log.warning("%s: stopped reading at a damaged part (%s)", redact(self.path), e)

    @property
    def missing_frames(self) -> int:
        """Frames the header promised that never decoded (a truncated or damaged file)."""
        if not self._ended or not self.stream.frames:
            return 0
        return max(0, self.stream.frames - self.decoded)

    @property
    def bad_frames(self) -> int:
        return self.bad_packets + self.corrupt_frames + self.missing_frames

    def damage_report(self) -> str:
        """'' when clean, else e.g. '3 damaged packets skipped, 2 frames decoded with errors'."""
        parts = []
        if self.bad_packets:
            parts.append(f"{self.bad_packets} damaged packets skipped")
        if self.corrupt_frames:
            parts.append(f"{self.corrupt_frames} frames decoded with errors")
        if self.missing_frames:
            parts.append(f"{self.missing_frames} of {self.stream.frames} frames missing")
        return ", ".join(parts)

    def _in_range(self, packet, end) -> bool:
        t = float(packet.pts * packet.time_base) if packet.pts is not None else None
        if t is None:
            return True
        return t >= self.start - 1e-9 and (end is None or t < end)

    def _frame(self, f, index) -> Frame:
        if self.size and (f.width, f.height) != self.size:
            img = f.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1],
                               interpolation="AREA")
        else:
            img = f.to_ndarray(format="rgb24")
        src = f.to_ndarray(format="rgb24") if self.keep_source else None
        return Frame(img, f.pts, f.time_base or self.time_base, index, src)

    def close(self):
        self.container.close()


def _is_eof(e) -> bool:
    return getattr(e, "errno", None) == errno.EPIPE or isinstance(e, av.error.EOFError)


@dataclass
class EncodeOptions:
    codec: str = "h264"  # h264 | h265 | av1 | any FFmpeg encoder name
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None  # default yuv420p; yuv444p for odd sizes (4:2:0 cannot be odd)
    audio: str = "copy"  # copy (re-encode only when the container cannot carry it) | aac | none
    hardware: str = "auto"  # NVENC when it works here (auto), required (hardware), or never

    def choice(self):
        """The encoder to use here and why (NVENC or software; see gpu_io)."""
        from .gpu_io import pick_encoder

        return pick_encoder(self.codec, self.hardware)


def check_output(path, overwrite: bool) -> Path:
    """Refuse to clobber, and fail before any work when the folder is not writable."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass -y to overwrite")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{folder}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: output folder is not writable")
    if path.suffix.lower() not in (".mp4", ".mkv", ".mov", ".webm", ".avi"):
        raise OutputError(f"{path}: unsupported output type '{path.suffix}' (mp4, mkv, mov, webm)")
    return path


class Sink:
    """Encodes RGB frames with their original timestamps into ``path`` (atomically)."""

    def __init__(self, path, *, width: int, height: int, time_base: Fraction,
                 frame_rate: Fraction | None, options: EncodeOptions | None = None,
                 audio_stream=None, rotation: int = 0, overwrite: bool = False):
        self.path = check_output(path, overwrite)
        self.options = options or EncodeOptions()
        self.width, self.height = width, height
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".streamgan-tmp{self.path.suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.frames_written = 0
        self._last_pts = None
        try:
            self.container = av.open(str(self.tmp), "w", format=self._format())
            self._add_video(time_base, frame_rate, rotation)
            self._add_audio(audio_stream)
        except Exception:
            self.tmp.unlink(missing_ok=True)
            raise

    def _format(self):
        return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".avi": "avi"}.get(
            self.path.suffix.lower(), "mp4")

    def _add_video(self, time_base, frame_rate, rotation):
        choice = self.encoder = self.options.choice()
        if choice.name == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only; its banner is noise
        rate = frame_rate if frame_rate and frame_rate > 0 else Fraction(25)
        s = self.container.add_stream(choice.name, rate=rate,
                                      options=choice.options(self.options.crf, self.options.preset))
        s.width, s.height = self.width, self.height
        odd = self.width % 2 or self.height % 2
        s.pix_fmt = self.options.pix_fmt or ("yuv444p" if odd else "yuv420p")
        if odd and s.pix_fmt.startswith(("yuv420", "nv12")):
            raise UsageError(f"{s.pix_fmt} cannot hold an odd frame size "
                             f"{self.width}x{self.height}; use yuv444p")
        s.codec_context.time_base = time_base  # frames keep their source pts: VFR stays VFR
        s.time_base = time_base
        if rotation:
            s.set_display_rotation(rotation)
        self.video = s
        self._tb = time_base

    def _add_audio(self, audio_stream):
        self.audio = self.audio_in = self._decoder = self._resampler = None
        if audio_stream is None or self.options.audio == "none":
            return
        ext = self.path.suffix.lower()
        name = audio_stream.codec_context.name
        allowed = AUDIO_COPY.get(ext, set())
        if self.options.audio == "copy" and (allowed is None or name in allowed):
            self.audio = self.container.add_stream_from_template(audio_stream)
            self.audio_copy = True
        else:
            codec = AUDIO_FALLBACK.get(ext, "aac")
            rate = audio_stream.codec_context.sample_rate or 48000
            if codec == "libopus":
                rate = 48000
            self.audio = self.container.add_stream(codec, rate=rate)
            # a native-order layout for the channel count ("2 channels" -> stereo)
            channels = audio_stream.codec_context.layout.nb_channels or 2
            self.audio.layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(channels, "stereo")
            self._decoder = av.CodecContext.create(audio_stream.codec_context.name, "r")
            self._decoder.extradata = audio_stream.codec_context.extradata
            self._decoder.sample_rate = audio_stream.codec_context.sample_rate
            self._decoder.layout = audio_stream.codec_context.layout
            self._resampler = av.AudioResampler(
                format=self.audio.codec_context.codec.audio_formats[0].name,
                layout=self.audio.layout, rate=rate)
            self.audio_copy = False
            log.info("audio %s cannot go into %s as-is: re-encoding to %s", name, ext, codec)
        self.audio_in = audio_stream

    def write_audio(self, packets: list) -> None:
        """Mux (or transcode) the audio packets collected so far."""
        if self.audio is None:
            packets.clear()
            return
        while packets:
            pkt = packets.pop(0)
            if self.audio_copy:
                pkt.stream = self.audio
                self._mux(pkt)
            else:
                for frame in self._decoder.decode(pkt):
                    frame.pts = None
                    for rf in self._resampler.resample(frame):
                        self._mux(self.audio.encode(rf))

    def write(self, image: np.ndarray, pts: int | None) -> None:
        """Encode one RGB frame (any size; scaled to the output size by FFmpeg if needed)."""
        frame = av.VideoFrame.from_numpy_buffer(image, format="rgb24") \
            if image.flags.c_contiguous else av.VideoFrame.from_ndarray(image, format="rgb24")
        if (frame.width, frame.height) != (self.video.width, self.video.height):
            frame = frame.reformat(self.video.width, self.video.height, self.video.pix_fmt,
                                   interpolation="BICUBIC")
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            pts = 0 if self._last_pts is None else self._last_pts + 1
        frame.pts, frame.time_base = pts, self._tb
        self._last_pts = pts
        self._mux(self.video.encode(frame))
        self.frames_written += 1

    def _mux(self, packets):
        try:
            self.container.mux(packets)
        except OSError as e:
            raise _output_error(self.path, e) from None

    def close(self, keep: bool = True) -> Path | None:
        """Flush encoders, close, and rename into place (or delete when ``keep`` is False)."""
        try:
            if keep:
                self._mux(self.video.encode(None))
                if self.audio is not None and not self.audio_copy:
                    self._mux(self.audio.encode(None))
            self.container.close()
        except Exception as e:
            self.tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise _output_error(self.path, e) from None
            raise
        if not keep or self.frames_written == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


def _output_error(path, e: OSError) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError(f"{path}: disk full while writing; nothing was overwritten")
    return OutputError(f"{path}: write failed ({e.strerror or e})")

