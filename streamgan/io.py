"""Video sources and sinks over PyAV (FFmpeg).

``Source`` opens anything FFmpeg reads (files, image sequences, GIFs, network URLs), decodes the
first video stream to RGB frames that keep their presentation timestamps, and hands the audio
packets over untouched. ``Sink`` encodes RGB frames with their original timestamps, copies or
re-encodes the audio, writes to a temporary file beside the target and moves it into place only
when finalised, so an existing file is never left half-overwritten. Without ``overwrite`` the move
never replaces a file (a no-replace link, checked at that moment, not only at the start); temp
files carry the writer's pid, so those left by a killed run are recognised and removed.

Scaling between the source and the model's processing resolution is done by FFmpeg's swscale in
the same pass as the pixel-format conversion (``to_ndarray(width=, height=)`` on decode,
``reformat`` on encode), never as an extra numpy step.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import logging
import os
import re
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from . import errors
from .errors import InputError, OutputError, UsageError

log = logging.getLogger("streamgan")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# inputs taken as videos (a folder of them is a batch: --out-dir)
VIDEO_EXTS = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
              ".m2ts", ".flv", ".wmv", ".3gp", ".gif")
# output types: video containers (FFmpeg muxer) and single images (encoder, pixel format)
VIDEO_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}
CONSTANT_RATE = {".avi"}  # containers that count frames at one rate (no timestamps)
IMAGE_FORMATS = {".png": ("png", "rgb24"), ".jpg": ("mjpeg", "yuvj444p"),
                 ".jpeg": ("mjpeg", "yuvj444p"), ".bmp": ("bmp", "bgr24"),
                 ".tif": ("tiff", "rgb24"), ".tiff": ("tiff", "rgb24")}
OUTPUT_TYPES = ", ".join(e[1:] for e in (*VIDEO_FORMATS, *IMAGE_FORMATS))
MIN_SIDE = 16  # smallest frame side the models take (frames.py pads to the model's multiple)
# audio codecs each output container can carry as-is; anything else is re-encoded
AUDIO_COPY = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le"},
    ".mkv": None,  # Matroska takes any codec
}
AUDIO_FALLBACK = {".webm": "libopus"}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


# query-string parameters that carry secrets: these words as a whole name or as a part of it
# (access_token, api_key, X-Amz-Signature, client_secret, ...), any case; and names that hold a
# secret anywhere in them (password, loginpas, hdnts=, hmac=, SRT's streamid)
_SECRET_WORDS = ("token", "password", "passwd", "pwd", "pass", "passphrase", "key", "apikey",
                 "sig", "signature", "auth", "authorization", "secret", "credential",
                 "credentials", "session", "sessionid", "jwt", "bearer", "private", "code",
                 "pas", "psw", "hdnts", "hdnea", "hmac", "streamid", "policy")
_SECRET_NAME = re.compile(r"(?:^|[_.\-])(?:%s)(?:$|[_.\-])|token|secret|pass|pas$|pwd|psw|apikey|"
                          r"signature|hmac|hdnts|streamid|credential|auth" % "|".join(_SECRET_WORDS),
                          re.I)
# a value ends at the next separator, or before the ": " of a message ("URL?token=x: cannot open")
_END = r"(?=[\s'\"]|:\s|:$|$)"
_PARAM = re.compile(r"([?&;])([^=&;#\s'\"]+)=([^&;#\s'\"]*?)(?=[&;#\s'\"]|:\s|:$|$)")
# user:password@ up to the LAST '@' before the path ("rtsp://admin:Pa@ss@cam/" hides "Pa@ss")
_USERINFO = re.compile(r"(://)[^/\s'\"]*@")
# RTMP stream keys: the last path element after the application (rtmp://host/live2/KEY)
_STREAM_KEY = re.compile(r"(rtmps?://[^/\s'\"]+/[^\s'\"?#]*/)[^/\s'\"?#]+?"
                         r"(?=[\s'\"?#]|:\s|:$|$)", re.I)
# a URL's #fragment (tokens handed to players), and SRT's streamid, whose value holds '#', ',', '='
_FRAGMENT = re.compile(r"(://[^\s'\"#]*#)[^\s'\"]+?" + _END)
_STREAMID = re.compile(r"([?&;]streamid=)[^&\s'\"]+?(?=[&\s'\"]|:\s|:$|$)", re.I)


def _mask_param(m: re.Match) -> str:
    name = urllib.parse.unquote(m.group(2))
    return f"{m.group(1)}{m.group(2)}=***" if _SECRET_NAME.search(name) else m.group(0)


def redact(text) -> str:
    """Hide the credentials in every URL of ``text``, by the URL's structure and by name:
    ``user:pass@`` (up to the last '@'), RTMP stream keys, SRT stream ids, the #fragment and
    secret query parameters (``rtsp://u:p@cam/s?token=abc`` -> ``rtsp://***@cam/s?token=***``).
    Works on any text: a URL, an error message, a traceback."""
    text = str(text)
    if "://" not in text:
        return text
    text = _USERINFO.sub(r"\1***@", text)
    text = _STREAMID.sub(r"\1***", text)
    text = _FRAGMENT.sub(r"\1***", text)
    text = _STREAM_KEY.sub(r"\1***", text)
    return _PARAM.sub(_mask_param, text) if "=" in text else text


class RedactFilter(logging.Filter):
    """Logging filter that passes every record through ``redact`` (message and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


log.addFilter(RedactFilter())


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


def folder_images(folder: Path) -> list[Path]:
    """The images a folder input is read from, in the order FFmpeg reads them (sorted names)."""
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS)


DEFAULT_MAX_PIXELS = 40_000_000  # 8K UHD (7680x4320) is 33.2 million


def max_pixels() -> int:
    """The largest frame (width x height) an input may have: ``STREAMGAN_MAX_PIXELS`` (the CLI's
    ``--max-pixels``), else 40 million. A larger frame is refused before it is decoded whole."""
    try:
        return int(float(os.environ.get("STREAMGAN_MAX_PIXELS", DEFAULT_MAX_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def check_frame_size(path, width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise InputError(f"{redact(path)}: frames of {width}x{height} ({width * height / 1e6:.1f} "
                         f"million pixels) are above the limit of {limit / 1e6:g} million; "
                         f"raise it with {errors.flag('--max-pixels N', 'STREAMGAN_MAX_PIXELS')}")


def image_size(path: Path) -> tuple[int, int] | None:
    """An image's size from its header, without decoding it (None: not an image Pillow reads).
    An image too large even to open is refused here."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Image.DecompressionBombError:
        raise InputError(f"{redact(path)}: more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:g} million "
                         f"pixels, above the limit of {max_pixels() / 1e6:g} million") from None
    except Exception:
        return None


def _check_sizes(files: list[Path], size: tuple[int, int], first: Path) -> None:
    """Fail before any work when a folder's images differ in size from ``first``'s: a video has
    one frame size, and FFmpeg would stretch the odd ones to the first one's without a word.
    Reads headers only."""
    for f in files:
        if f == first or not f.stat().st_size:
            continue
        wh = image_size(f)
        if wh is None:
            continue  # unreadable: skipped with a warning when its turn comes
        if wh != size:
            raise InputError(f"{redact(f)}: {wh[0]}x{wh[1]}, but {first.name} is {size[0]}x{size[1]}; "
                             "the images of a folder become one video and must share one size")


def check_input(path) -> tuple[str, str | None, dict]:
    """Fail at once for a local input that cannot work (missing, empty, a folder without
    images, a pattern matching nothing); returns (path for FFmpeg, format, options). URLs and
    devices pass through (they are checked when opened)."""
    path = str(path)
    fmt, opts = None, {}
    if _is_url(path):
        return path, fmt, opts
    p = Path(path)
    if p.is_dir():
        files = folder_images(p)
        if not files:
            if any(f.suffix.lower() in VIDEO_EXTS for f in p.iterdir()):
                raise UsageError(f"{path}: folder holds videos, not images; translate each of them "
                                 f"into a folder with {errors.flag('--out-dir DIR', 'translate_many()')}")
            raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTS)})")
        exts = {f.suffix.lower() for f in files}
        if len(exts) > 1:
            raise InputError(f"{path}: mixed image types {sorted(exts)}; keep one type")
        # read image by image (Source): FFmpeg's own folder reading ends at an empty image.
        # The first non-empty one is what the folder's size and format are read from.
        first = next((f for f in files if f.stat().st_size), None)
        if first is None:
            raise InputError(f"{path}: every image in the folder is empty (0 bytes)")
        path, fmt = str(first), "image2"
        opts["pattern_type"] = "none"
        p = first
    elif "%" in p.name and not p.is_file():  # an existing file is a file, '%' or not
        fmt = "image2"
        if not glob.glob(re.sub(r"%0?\d*d", "*", str(p))):
            raise InputError(f"{path}: no file matches this image-sequence pattern")
    elif not p.exists():
        raise InputError(f"{path}: no such file")
    elif p.is_file() and p.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    elif "%" in p.name and p.suffix.lower() in IMAGE_EXTS:
        fmt, opts["pattern_type"] = "image2", "none"  # FFmpeg's image reader: not a pattern
    if p.is_file() and p.suffix.lower() in IMAGE_EXTS:  # its size before FFmpeg decodes it
        wh = image_size(p)
        if wh is not None:
            check_frame_size(p, *wh)
    if fmt == "image2":
        opts["framerate"] = "25"
    return path, fmt, opts


def _open_input(path, options: dict | None = None, timeout: float | None = None,
                hwaccel: str = "software"):
    """av.open with every failure turned into one clear InputError.

    A network input (a URL) never waits for ever: ``timeout`` seconds (10 by default, as
    ``--stall-timeout``) bound the connection, every read while opening and every later read
    (PyAV's interrupt callback; for http/https/tcp also FFmpeg's own ``rw_timeout``).
    ``hwaccel``: "auto" decodes on an NVIDIA GPU when FFmpeg can open one (see gpu_io)."""
    path, fmt, found = check_input(path)
    opts = {**found, **(options or {})}
    if timeout is None and _is_url(path):
        timeout = 10.0
    limit = timeout[0] if isinstance(timeout, tuple) else timeout
    if limit is not None and path.split("://", 1)[0].lower() in ("http", "https", "tcp"):
        opts.setdefault("rw_timeout", str(int(limit * 1e6)))  # microseconds
    t0 = time.monotonic()
    try:
        if hwaccel != "software":  # NVDEC; a device that cannot open falls back (gpu_io)
            from .gpu_io import open_input

            return open_input(path, hwaccel, format=fmt, options=opts, timeout=timeout)
        return av.open(path, format=fmt, options=opts, timeout=timeout)
    except av.FFmpegError as e:
        # a read cut short by the timeout often surfaces as the demuxer's own error
        # (a header that ends early reads as invalid data): the time taken tells
        if limit is not None and (isinstance(e, av.error.ExitError) or
                                  getattr(e, "errno", None) == errno.ETIMEDOUT or
                                  time.monotonic() - t0 >= 0.9 * limit):
            raise InputError(f"{redact(path)}: no answer within {limit:g} s (the server is "
                             "unreachable, or stopped sending)") from None
        if e.errno == errno.EBUSY and not _is_url(path):  # what FFmpeg's readers say of a header
            raise InputError(f"{redact(path)}: its header declares what FFmpeg refuses to read "
                             "(a frame size beyond FFmpeg's limits, or a damaged header)") from None
        if isinstance(e, av.error.FileNotFoundError):
            raise InputError(f"{redact(path)}: no such file") from None
        if isinstance(e, av.error.PermissionError):
            raise InputError(f"{redact(path)}: permission denied") from None
        if isinstance(e, (av.error.InvalidDataError, av.error.PatchWelcomeError,
                          av.error.DecoderNotFoundError)):
            raise InputError(f"{redact(path)}: not a video or image file FFmpeg can read") \
                from None
        if isinstance(e, av.error.EOFError):
            raise InputError(f"{redact(path)}: the video has no frames (it ends after its "
                             "header)") from None
        raise InputError(f"{redact(path)}: cannot open ({redact(e.strerror or e)})") from None


def _video_stream(container, path):
    if not container.streams.video:
        container.close()
        raise InputError(f"{redact(path)}: has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise InputError(f"{redact(path)}: video codec is not supported by this FFmpeg build")
    return stream


def _image_count(path) -> int | None:
    """Frames of an image input, which no header counts: one image, or a folder's images."""
    if _is_url(path):
        return None
    p = Path(path)
    if p.is_dir():
        return len(folder_images(p)) or None
    return 1 if p.suffix.lower() in IMAGE_EXTS else None


def probe(path, timeout: float | None = None) -> VideoInfo:
    """What `streamgan info` prints: container, codec, size, rate, duration, frames, audio.
    ``timeout``: seconds a network input may keep us waiting (see ``_open_input``)."""
    container = _open_input(path, timeout=timeout)
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
        images = _image_count(path)
        if images and Path(path).is_dir():  # read image by image: the folder's length
            duration = images * float(s.time_base or Fraction(1, 25))
        return VideoInfo(
            path=redact(str(path)), container=container.format.name, codec=cc.name,
            width=cc.width, height=cc.height, pix_fmt=cc.pix_fmt or "?",
            frame_rate=s.average_rate, time_base=s.time_base or Fraction(1, 25),
            duration=duration, frames=s.frames or images, rotation=rotation, audio=audio)
    finally:
        container.close()


class Source:
    """Decodes one input's video as ``Frame``s; collects its audio packets for the sink.

    ``size`` (w, h) asks FFmpeg to scale while converting to RGB. ``i420 = True`` (set before
    iterating; not with ``size`` or ``keep_source``) gives the decoder's 8-bit 4:2:0 planes
    instead, H*3/2 x W uint8 (Y, then U and V), with no colour conversion; a frame in another
    format or full range is converted to that. ``start``/``duration`` in seconds and
    ``max_frames`` trim the input. Undecodable packets are skipped and counted in
    ``bad_frames`` rather than ending the run.
    """

    def __init__(self, path, *, size: tuple[int, int] | None = None, start: float = 0.0,
                 duration: float | None = None, max_frames: int | None = None,
                 keep_source: bool = False, options: dict | None = None,
                 timeout: float | None = None, hwaccel: str = "software"):
        self.path = str(path)
        if duration is not None and duration <= 0:
            raise UsageError(f"{errors.flag('--duration', 'duration')} must be more than 0 s "
                             f"(got {duration:g})")
        self.container = _open_input(path, options, timeout, hwaccel)
        self.decoder = None  # after the first frame of a hardware-decoded input: what decoded it
        self.stream = _video_stream(self.container, path)
        # what the header promises, read while the container is open (PyAV 18.1.1 refuses it after close)
        self.header_frames = self.stream.frames
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        self.width, self.height = cc.width, cc.height
        if not self.width or not self.height:
            self.close()
            raise InputError(f"{redact(path)}: video stream has no frame size (corrupt header?)")
        try:
            check_frame_size(path, self.width, self.height)
        except InputError:
            self.close()
            raise
        # a folder of images: one size for all, and a damaged image is skipped (and named), not
        # decoded half grey
        self.images = folder_images(Path(path)) if not _is_url(path) and Path(path).is_dir() else None
        if self.images:
            try:
                _check_sizes(self.images, (self.width, self.height), Path(self.container.name))
            except InputError:
                self.close()
                raise
        self.length = self._length()  # seconds, None when the header does not say
        if start and self.length is not None and start >= self.length:
            self.close()
            raise UsageError(f"{errors.flag('--start', 'start')} {start:g} s is past the end of "
                             f"{redact(path)} ({self.length:.2f} s long)")
        self.pix_fmt = cc.pix_fmt or ""
        self.time_base = self.stream.time_base or Fraction(1, 25)
        self.frame_rate = self.stream.average_rate or self.stream.guessed_rate
        self.audio_stream = self.container.streams.audio[0] if self.container.streams.audio else None
        self.size = size
        self.start, self.duration, self.max_frames = start, duration, max_frames
        self.keep_source = keep_source
        self.i420 = False  # frames as yuv420p planes (no RGB conversion), see the class doc
        self.bad_packets = 0  # packets the decoder rejected
        self.corrupt_frames = 0  # frames decoded with errors (concealed by FFmpeg, kept)
        self.decoded = 0
        self._ended = False  # the whole input was read (not trimmed, not stopped early)
        self.rotation = 0
        self.audio_packets: list = []  # filled while decoding; drained by the sink
        self.expected_frames = self._expected_frames()

    def _length(self) -> float | None:
        s = self.stream
        if self.images:
            return len(self.images) * float(s.time_base or Fraction(1, 25))
        if s.duration is not None and s.time_base:
            return float(s.duration * s.time_base)
        if self.container.duration:
            return self.container.duration / av.time_base
        return None

    @property
    def bit_depth(self) -> int:
        """Bits per sample of the decoded video (8 for most inputs, 10 for HDR/10-bit ones)."""
        try:
            return av.video.format.VideoFormat(self.pix_fmt).components[0].bits
        except (ValueError, IndexError, TypeError):
            return 8

    def _expected_frames(self) -> int | None:
        n = len(self.images) if self.images else self.header_frames or None
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
        if self.images:
            yield from self._image_frames(start_pts, end)
            return
        streams = [self.stream] + ([self.audio_stream] if self.audio_stream else [])
        index = packets = 0
        try:
            for packet in self.container.demux(streams):
                if packet.stream is self.audio_stream:
                    if packet.dts is not None and self._in_range(packet, end):
                        self.audio_packets.append(packet)
                    continue
                packets += 1
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
                        if self.stream.codec_context.is_hwaccel:  # NVDEC, or its silent fallback
                            from .gpu_io import report_decoder

                            self.decoder = report_decoder(self.stream, redact(self.path))
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

    def _image_frames(self, start_pts: int | None, end: float | None) -> Iterator[Frame]:
        """A folder's images one by one, each at its place in time (1/25 s apart); an empty or
        damaged image is skipped and named (its place stays a gap), the rest go on."""
        tb = self.stream.time_base or Fraction(1, 25)
        index = 0
        for pts, f in enumerate(self.images):
            if start_pts is not None and pts < start_pts:
                continue
            if end is not None and float(pts * tb) >= end - 1e-9:
                return
            empty = False
            try:
                empty = not f.stat().st_size
                if empty:
                    raise ValueError("empty")
                with av.open(str(f), format="image2", options={"pattern_type": "none"}) as c:
                    stream = c.streams.video[0]
                    stream.codec_context.options = {**stream.codec_context.options,
                                                    "err_detect": "explode"}
                    frame = next(c.decode(stream))
            except (av.FFmpegError, OSError, ValueError, IndexError, StopIteration):
                self.bad_packets += 1
                log.warning("%s: %s image skipped", redact(f), "empty" if empty else "damaged")
                continue
            if (frame.width, frame.height) != (self.width, self.height):
                self.bad_packets += 1  # replaced since the size check
                log.warning("%s: image of another size skipped", redact(f))
                continue
            frame.pts, frame.time_base = pts, tb
            yield self._frame(frame, index)
            index += 1
            self.decoded = index
            if self.max_frames is not None and index >= self.max_frames:
                return
        self._ended = not (self.start or self.duration is not None or self.max_frames)

    @property
    def missing_frames(self) -> int:
        """Frames the header promised that never decoded (a truncated or damaged file)."""
        if not self._ended or self.images or not self.header_frames:
            return 0
        return max(0, self.header_frames - self.decoded)

    @property
    def bad_frames(self) -> int:
        return self.bad_packets + self.corrupt_frames + self.missing_frames

    def damage_report(self) -> str:
        """'' when clean, else e.g. '3 damaged packets skipped, 2 frames decoded with errors'."""
        parts = []
        if self.bad_packets:
            parts.append(f"{self.bad_packets} damaged {'images' if self.images else 'packets'} skipped")
        if self.corrupt_frames:
            parts.append(f"{self.corrupt_frames} frames decoded with errors")
        if self.missing_frames:
            parts.append(f"{self.missing_frames} of {self.header_frames} frames missing")
        return ", ".join(parts)

    def _in_range(self, packet, end) -> bool:
        t = float(packet.pts * packet.time_base) if packet.pts is not None else None
        if t is None:
            return True
        return t >= self.start - 1e-9 and (end is None or t < end)

    def dropped_streams(self) -> str:
        """What of the input the output does not carry ('' when nothing): the first video and
        the first audio track are kept."""
        streams, parts = self.container.streams, []
        if len(streams.video) > 1:
            parts.append(f"{len(streams.video)} video streams, the first is translated")
        if len(streams.audio) > 1:
            parts.append(f"{len(streams.audio)} audio tracks, only the first is kept")
        if streams.subtitles:
            n = len(streams.subtitles)
            parts.append(f"{n} subtitle track{'s' * (n > 1)} not kept")
        return "; ".join(parts)

    def _frame(self, f, index) -> Frame:
        if (f.width, f.height) != getattr(self, "_last_size", (self.width, self.height)):
            self._last_size = (f.width, f.height)
            log.warning("notice: %s: the frame size changes to %dx%d at frame %d; the output "
                        "stays %dx%d (frames scaled to it)", redact(self.path), f.width,
                        f.height, index, self.width, self.height)
        if self.i420:
            if f.format.name != "yuv420p" or f.color_range == 2:  # 2: JPEG (full) range
                f = f.reformat(format="yuv420p", dst_color_range=1)
            return Frame(f.to_ndarray(), f.pts, f.time_base or self.time_base, index)
        size = self.size  # read once: --size auto may change it from the engine's thread
        if size and (f.width, f.height) != size:
            img = f.to_ndarray(format="rgb24", width=size[0], height=size[1],
                               interpolation="AREA")
        else:
            img = f.to_ndarray(format="rgb24")
        src = f.to_ndarray(format="rgb24") if self.keep_source else None
        return Frame(img, f.pts, f.time_base or self.time_base, index, src)

    def close(self):
        self.container.close()


def _is_eof(e) -> bool:
    return getattr(e, "errno", None) == errno.EPIPE or isinstance(e, av.error.EOFError)


# x264/x265 preset names; NVENC takes p1..p7 (x264 names are mapped to its default, see gpu_io)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
PRESETS = {"libx264": X264_PRESETS, "libx265": X264_PRESETS,
           "libsvtav1": tuple(str(i) for i in range(-1, 14))}
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libvpx": (4, 63),
             "libsvtav1": (1, 63), "libaom-av1": (0, 63)}
NVENC_CQ = (0, 51)
CODECS = ("h264", "h265", "hevc", "av1", "vp9")  # names of our own; else an FFmpeg encoder
WEBM_VIDEO = ("vp8", "vp9", "av1")  # what a .webm file can hold


@dataclass
class EncodeOptions:
    codec: str | None = None  # h264 | h265 | av1 | vp9 | any FFmpeg encoder; None: per container
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None  # default yuv420p (odd sizes padded by one pixel, see exact_size)
    audio: str = "copy"  # copy (re-encode only when the container cannot carry it) | aac | none
    hardware: str = "auto"  # NVENC when it works here (auto), required (hardware), or never
    exact_size: bool = False  # odd sizes: keep them exactly (yuv444p) instead of padding to even
    threads: int | None = None  # encoder threads (None: FFmpeg's choice; see docs/PERFORMANCE.md)

    def codec_for(self, ext: str = ".mp4") -> str:
        """The codec asked for, or the container's default: H.264, VP9 (else AV1) for .webm."""
        if self.codec:
            return self.codec
        if ext.lower() == ".webm":
            return "vp9" if "libvpx-vp9" in av.codecs_available else "av1"
        return "h264"

    def choice(self, ext: str = ".mp4"):
        """The encoder to use here for a file of type ``ext`` and why (NVENC or software; see
        gpu_io). A codec, preset or crf that cannot work is a ``UsageError`` here, before any
        work is done."""
        from .engines import nvidia_driver_present
        from .gpu_io import EncoderChoice, pick_encoder

        codec = self.codec_for(ext)
        if codec not in CODECS:
            try:
                known = av.Codec(codec, "w").type == "video"
            except Exception:  # UnknownCodecError, ValueError
                known = False
            if not known:
                raise UsageError(f"unknown codec '{codec}'; choose {', '.join(CODECS)} or an "
                                 "FFmpeg video encoder (ffmpeg -encoders)")
        if codec == "vp9":
            if "libvpx-vp9" not in av.codecs_available:
                raise UsageError("VP9 (libvpx-vp9) is not in this FFmpeg build; use av1")
            choice = EncoderChoice("libvpx-vp9", False, "software")
        else:
            choice = pick_encoder(codec, self.hardware)
            if not choice.hardware and not nvidia_driver_present():
                choice = EncoderChoice(choice.name, False, "software")
        if ext.lower() == ".webm" and not any(w in choice.name for w in WEBM_VIDEO):
            use = errors.flag("--codec vp9 or av1", "codec='vp9' or 'av1'")
            raise UsageError(f"a .webm file holds VP8, VP9 or AV1 video, not {codec}; use {use} "
                             "(or leave the codec out: the container picks one)")
        self._check(choice)
        return choice

    def _check(self, choice) -> None:
        name = choice.name
        if not choice.hardware and self.codec_for() not in CODECS:
            # an FFmpeg encoder named by the user (png, mjpeg...) may not take the video's 4:2:0
            try:
                formats = [f.name for f in av.Codec(name, "w").video_formats or ()]
            except Exception:
                formats = []
            want = self.pix_fmt or "yuv420p"
            if formats and want not in formats and not (self.exact_size and "yuv444p" in formats):
                raise UsageError(f"the {name} encoder does not take {want} video (it takes "
                                 f"{', '.join(formats[:4])}); choose {', '.join(CODECS)}")
            try:  # what it refuses only when opened (a colour range, a strictness level)
                ctx = av.CodecContext.create(name, "w")
                ctx.width, ctx.height, ctx.pix_fmt = 64, 64, want
                ctx.time_base = Fraction(1, 25)
                ctx.open()
            except av.FFmpegError as e:
                raise UsageError(f"the {name} encoder cannot encode {want} video here "
                                 f"({e.strerror or e}); choose {', '.join(CODECS)}") from None
        crf = errors.flag("--crf", "crf")
        preset = errors.flag("--preset", "preset")
        if self.crf is not None:
            lo, hi = NVENC_CQ if choice.hardware else CRF_RANGE.get(name, (None, None))
            if lo is None:
                raise UsageError(f"{crf} is not supported by the {name} encoder")
            if not lo <= self.crf <= hi:
                raise UsageError(f"{crf} {self.crf} is outside {name}'s range {lo}-{hi}")
        if self.preset is not None:
            valid = (tuple(f"p{i}" for i in range(1, 8)) + X264_PRESETS if choice.hardware
                     else PRESETS.get(name))
            if valid is None:
                raise UsageError(f"{preset} is not used by the {name} encoder")
            if self.preset not in valid:
                raise UsageError(f"unknown {preset} '{self.preset}' for {name}; choose one of "
                                 f"{', '.join(valid)}")

    def stream_options(self, choice) -> dict[str, str]:
        """Encoder options: quality and speed defaults, encoder chatter off unless debugging."""
        opts = dict(choice.options(self.crf, self.preset))
        if choice.name == "libvpx-vp9":  # constant quality, a speed like x264's veryfast
            opts.update({"crf": str(self.crf if self.crf is not None else 32), "b": "0",
                         "deadline": "good", "cpu-used": "5", "row-mt": "1"})
        if choice.name == "libx265" and not log.isEnabledFor(logging.DEBUG):
            opts.setdefault("x265-params", "log-level=error")  # no x265 [info] lines on stderr
        if choice.name == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only; its banner is noise
        return opts


def output_size(width: int, height: int, options: EncodeOptions) -> tuple[int, int, str]:
    """(width, height, pix_fmt) to encode frames of this size: odd sizes are padded by one
    pixel to 4:2:0 (which every player takes) unless ``exact_size`` keeps them as yuv444p."""
    odd = width % 2 or height % 2
    if odd and options.exact_size:
        pix = options.pix_fmt or "yuv444p"
        if pix.startswith(("yuv420", "nv12", "yuvj420")):
            raise UsageError(f"{pix} cannot hold an odd frame size {width}x{height}; "
                             "use yuv444p")
        return width, height, pix
    pix = options.pix_fmt or "yuv420p"
    if odd:
        w2, h2 = width + width % 2, height + height % 2
        log.warning("notice: odd frame size %dx%d padded to %dx%d (last %s repeated) so the "
                    "video is 4:2:0 and plays everywhere; %s keeps %dx%d", width, height, w2, h2,
                    "column and row" if width % 2 and height % 2 else
                    ("column" if width % 2 else "row"),
                    errors.flag("--exact-size", "exact_size=True"), width, height)
        return w2, h2, pix
    return width, height, pix


def resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Scale one RGB image with FFmpeg's swscale (area when shrinking, bicubic when growing)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    shrink = w * h < image.shape[0] * image.shape[1]
    return frame.reformat(w, h, "rgb24", interpolation="AREA" if shrink else "BICUBIC").to_ndarray()


def pad_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pad an H x W x 3 image at the right/bottom to (width, height) by repeating the edge."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


# -- output files ------------------------------------------------------------------------------
# temp files: .<name>.<pid>.<random>.streamgan-tmp<ext>, so one whose writer is gone is known;
# writers sharing a folder with other machines (cluster tasks, ``name_temps_by_host``) write
# .<name>.<host>-<pid>.<random>..., and only that host judges whether the writer is gone
_TMP_GLOB = ".*.streamgan-tmp*"
_TMP_NAME = re.compile(r"^\..*\.(?:(?P<host>[A-Za-z0-9-]+)-)?(?P<pid>\d+)\.[a-z0-9_]+"
                       r"\.streamgan-tmp(\.[^.]*)?$")
_temp_host: str | None = None


def _host() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def name_temps_by_host() -> None:
    """This process writes into folders other machines write to too (a Ray cluster's shared
    output folder): temp names carry this host, so another host never takes them for a dead
    writer's (a pid means nothing across machines)."""
    global _temp_host
    _temp_host = _host()


def _same_file(src, dst: Path) -> bool:
    if src is None or _is_url(src) or not dst.exists():
        return False
    try:
        return os.path.samefile(src, dst)
    except OSError:
        return False


def refuse_input(path: Path, src) -> None:
    """OutputError when ``path`` is the input ``src`` (the same name, a link to it, a hard link)."""
    if _same_file(src, path):
        via = "" if str(src) == str(path) else f" ({redact(src)})"
        raise OutputError(f"{redact(path)} is the input file{via}; write the output to another "
                          "path (the input is never overwritten)")


def check_output(path, overwrite: bool, src=None) -> Path:
    """Refuse to clobber or to write over the input, and fail before any work when the folder
    cannot take a file; removes temp files that killed runs left in that folder."""
    path = Path(path)
    refuse_input(path, src)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{redact(path)} exists; pass {errors.flag('-y', 'overwrite=True')} "
                          "to overwrite")
    if path.is_dir():
        raise OutputError(f"{redact(path)} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{redact(folder)}: output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{redact(folder)}: output folder is not writable")
    ext = path.suffix.lower()
    if ext not in VIDEO_FORMATS and ext not in IMAGE_FORMATS:
        raise OutputError(f"{redact(path)}: unsupported output type '{path.suffix}' "
                          f"({OUTPUT_TYPES})")
    clean_stale_temps(folder)
    discard_temp(make_temp(path))  # the folder really takes a file (/proc, /sys, read-only mounts)
    return path


def _file_mode() -> int:
    """0o666 less the process umask: the mode any tool gives a new file."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_NAME_MAX = 255  # bytes in one file name on Linux file systems
_held: dict[str, int] = {}  # temp file -> the descriptor holding its lock while this run writes


def fit_name(stem: str, tail: str) -> str:
    """``stem + tail``, the stem cut (at a character boundary) so the name fits in 255 bytes."""
    room = _NAME_MAX - len(tail.encode())
    return stem.encode()[:max(room, 1)].decode(errors="ignore") + tail


def make_temp(path: Path) -> Path:
    """A new, empty temp file beside ``path`` with the umask's permissions, locked (flock) for as
    long as this process writes it, so a cleaner in any process, container or PID namespace
    sharing the folder can tell it from a killed run's (``clean_stale_temps``)."""
    folder = path.parent if str(path.parent) else Path(".")
    writer = f"{_temp_host}-{os.getpid()}" if _temp_host else str(os.getpid())
    tail = f".{writer}.XXXXXXXX.streamgan-tmp{path.suffix}"  # mkstemp's 8 random characters
    prefix = fit_name(f".{path.stem}", tail)[:-len(tail)] + f".{writer}."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".streamgan-tmp{path.suffix}",
                                   dir=folder)
    except OSError as e:
        raise OutputError(f"{redact(folder)}: cannot create a file here ({e.strerror or e})") \
            from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # a file system without locks: the cleaner then goes by pid and age
    os.fchmod(fd, _file_mode())  # mkstemp makes 0600
    _held[tmp] = fd
    return Path(tmp)


def release_temp(tmp: Path) -> None:
    """Let go of a temp file's lock (after it was moved into place or deleted)."""
    fd = _held.pop(str(tmp), None)
    if fd is not None:
        os.close(fd)


def discard_temp(tmp: Path) -> None:
    """Delete a temp file of this run and let go of its lock."""
    Path(tmp).unlink(missing_ok=True)
    release_temp(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


_UNLOCKED_AGE = 3600.0  # on a file system without locks: untouched this long, and pid gone
_GRACE = 5.0  # a temp file this new may be between its creation and its lock


def _writer_gone(f: Path) -> bool | None:
    """Whether the run that writes ``f`` is gone: its lock is free (the kernel drops a lock with
    its holder, whatever namespace or container it ran in). None: the file system has no locks."""
    try:
        fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # held: a run is writing it
    except OSError:
        return None
    finally:
        os.close(fd)
    return True


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove the temp files of runs that were killed: their lock is free, their pid is not a
    live process here and they were not touched in the last seconds (on a file system without
    locks: pid gone and untouched for an hour). Files of another host's runs and of unknown
    naming are left (the latter said). Returns what was removed."""
    removed = []
    for f in sorted(Path(folder).glob(_TMP_GLOB)):
        m = _TMP_NAME.match(f.name)
        if m is None:
            log.warning("%s: a temp file of an interrupted run (writer unknown); delete it if no "
                        "streamgan run is writing in this folder", f)
            continue
        pid = int(m["pid"])
        if m["host"] and m["host"] != _host():
            continue  # another machine's writer: only that machine can tell if it is gone
        if str(f) in _held or pid == os.getpid() or _alive(pid) or f.is_symlink():
            continue
        try:
            st = f.stat()
        except OSError:
            continue
        age = time.time() - st.st_mtime
        gone = _writer_gone(f)
        # an empty, brand-new file may be between its creation and its lock; one with data was
        # locked before its first byte
        if not (gone and (st.st_size or age > _GRACE)) and \
                not (gone is None and age > _UNLOCKED_AGE):
            continue
        try:
            f.unlink()
        except OSError:
            continue
        removed.append(f)
        log.warning("removed %s, left by a run that was killed (pid %d)", f, pid)
    return removed


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """renameat2(RENAME_NOREPLACE) for file systems without hard links; False if dst exists."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), 1)
        err = ctypes.get_errno()
    except (AttributeError, OSError):
        rc, err = -1, errno.ENOSYS
    if rc == 0:
        return True
    if err == errno.EEXIST:
        return False
    if err in (errno.ENOSYS, errno.EINVAL):  # neither links nor renameat2: check, then move
        if dst.exists():
            return False
        os.rename(src, dst)
        return True
    raise OSError(err, os.strerror(err), str(dst))


def move_noreplace(src: Path, dst: Path) -> bool:
    """Move ``src`` to ``dst`` only if nothing is at ``dst`` at that moment (a hard link, which
    fails when the name exists, then unlink). False, and ``src`` untouched, when dst exists."""
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                           errno.ENOSYS):
            raise
        return _rename_noreplace(src, dst)
    os.unlink(src)
    return True


def move_to_free_name(src: Path, dst: Path, tag: str) -> Path:
    """Move ``src`` beside ``dst`` as <stem>.<tag><ext> (or .<tag>-2, -3, ... if taken)."""
    for i in range(1, 10_000):
        alt = dst.with_name(fit_name(dst.stem, f".{tag}{'' if i == 1 else f'-{i}'}{dst.suffix}"))
        if move_noreplace(src, alt):
            release_temp(src)
            return alt
    raise OutputError(f"{redact(dst)}: no free name beside it for this run's result")


def publish(tmp: Path, dst: Path, overwrite: bool) -> Path:
    """Put the finished ``tmp`` at ``dst``. Without ``overwrite`` nothing is ever replaced, even
    a file that appeared during the run: the result then goes to a sibling name and
    ``OutputError`` (with ``.path``) says where."""
    if overwrite:
        os.replace(tmp, dst)  # replaces the name: a link there is replaced, never followed
        release_temp(tmp)
        return dst
    if move_noreplace(tmp, dst):
        release_temp(tmp)
        return dst
    alt = move_to_free_name(tmp, dst, "new")
    err = OutputError(f"{redact(dst)} was created by something else during this run and was left "
                      f"as it is; this run's result is in {redact(alt)}")
    err.path = alt
    raise err


class Sink:
    """Encodes RGB frames with their original timestamps into ``path`` (atomically).

    A video container (mp4, mkv, mov, webm, avi) or one image (png, jpg, bmp, tif)."""

    def __init__(self, path, *, width: int, height: int, time_base: Fraction,
                 frame_rate: Fraction | None, options: EncodeOptions | None = None,
                 audio_stream=None, rotation: int = 0, overwrite: bool = False,
                 keep_partial: bool = False):
        self.path = check_output(path, overwrite)
        self.overwrite, self.keep_partial = overwrite, keep_partial
        self.options = options or EncodeOptions()
        self.image = self.path.suffix.lower() in IMAGE_FORMATS
        self.src_size = (width, height)
        self.width, self.height = width, height
        self.tmp = make_temp(self.path)
        self.frames_written = 0
        self._last_pts = None
        self._step = None  # constant-rate containers: source ticks -> frame numbers
        try:
            if self.image:
                self.container = av.open(str(self.tmp), "w", format="image2",
                                         options={"update": "1"})
                self._add_image()
            else:
                self.container = av.open(str(self.tmp), "w", format=VIDEO_FORMATS[
                    self.path.suffix.lower()])
                self._add_video(time_base, frame_rate, rotation)
                self._add_audio(audio_stream)
        except OSError as e:
            discard_temp(self.tmp)
            raise _output_error(self.path, e) from None
        except BaseException:
            discard_temp(self.tmp)
            raise

    def _add_image(self):
        codec, pix = IMAGE_FORMATS[self.path.suffix.lower()]
        s = self.container.add_stream(codec, rate=1)
        s.width, s.height, s.pix_fmt = self.width, self.height, pix
        self.video, self._tb, self.audio = s, Fraction(1, 1), None
        self.encoder = None

    def _add_video(self, time_base, frame_rate, rotation):
        choice = self.encoder = self.options.choice(self.path.suffix)
        rate = frame_rate if frame_rate and frame_rate > 0 else Fraction(25)
        try:
            s = self.container.add_stream(choice.name, rate=rate,
                                          options=self.options.stream_options(choice))
        except ValueError as e:  # the container cannot hold this codec
            raise UsageError(f"{self.path.suffix} files cannot hold {choice.name} video ({e})") \
                from None
        self.width, self.height, s.pix_fmt = output_size(self.width, self.height, self.options)
        s.width, s.height = self.width, self.height
        if self.options.threads:
            s.codec_context.thread_count = int(self.options.threads)
        if self.path.suffix.lower() in CONSTANT_RATE:
            # AVI counts frames at one rate and stores them in decode order with no times of their
            # own: one tick per frame, source times rounded to it, no B-frames (their reordering
            # would play out of order)
            self._step = time_base * rate  # source ticks -> frames
            time_base = 1 / rate
            s.codec_context.max_b_frames = 0
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

    def write(self, image: np.ndarray, pts: int | None, *, i420: bool = False) -> None:
        """Encode one RGB frame: at the source size (odd sizes padded, see ``output_size``) or
        any other size (scaled to the output size by FFmpeg). ``i420``: the image is already
        yuv420p planes (H*3/2 x W) at the output size, encoded without any conversion."""
        if self.image and self.frames_written:
            more = errors.flag("--frames 1", "frames=1")
            raise UsageError(f"{redact(self.path)}: an image output holds one frame; the input "
                             f"has more (use a video output, or {more})")
        h, w = image.shape[:2]
        fmt = "yuv420p" if i420 else "rgb24"
        if not i420 and (w, h) == self.src_size and (w, h) != (self.width, self.height):
            image = pad_to(image, self.width, self.height)
        frame = av.VideoFrame.from_numpy_buffer(image, format=fmt) \
            if image.flags.c_contiguous else av.VideoFrame.from_ndarray(image, format=fmt)
        if (frame.width, frame.height) != (self.video.width, self.video.height):
            frame = frame.reformat(self.video.width, self.video.height, self.video.pix_fmt,
                                   interpolation="BICUBIC")
        if pts is not None and self._step is not None:
            pts = round(pts * self._step)
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

    def close(self, keep: bool = True, partial: bool = False) -> Path | None:
        """Flush encoders, close, and move into place (or delete when ``keep`` is False).

        ``partial``: the run was stopped early. A partial result never replaces an existing
        file unless ``keep_partial`` was given: it goes beside it as <stem>.partial<ext>.
        Without ``overwrite`` nothing is replaced at all (see ``publish``)."""
        try:
            if keep:
                self._mux(self.video.encode(None))
                if self.audio is not None and not self.audio_copy:
                    self._mux(self.audio.encode(None))
            self.container.close()
        except Exception as e:
            discard_temp(self.tmp)
            if isinstance(e, OSError):
                raise _output_error(self.path, e) from None
            raise
        if not keep or self.frames_written == 0:
            discard_temp(self.tmp)
            return None
        try:
            if partial and self.overwrite and not self.keep_partial and self.path.exists():
                return move_to_free_name(self.tmp, self.path, "partial")
            return publish(self.tmp, self.path, self.overwrite)
        except OSError as e:
            discard_temp(self.tmp)
            raise _output_error(self.path, e) from None

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        discard_temp(self.tmp)


def _output_error(path, e: OSError) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError(f"{redact(path)}: disk full while writing; nothing was overwritten")
    return OutputError(f"{redact(path)}: write failed ({e.strerror or e})")

