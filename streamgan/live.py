"""Live inputs and real-time translation.

``LiveSource`` reads a camera-like input (``rtsp://`` over TCP by default or UDP, ``rtmp://``,
``srt://``, ``udp://``, an HLS ``.m3u8`` playlist over HTTP, a V4L2 device ``/dev/videoN``)
through PyAV. When the stream drops (an error, the server ending the session, or a *stall*: no
frame for ``stall_timeout`` seconds) it reconnects with exponential backoff and carries on with
timestamps that keep increasing; it gives up with one clear ``InputError`` after ``reconnect``
attempts in a row fail. Credentials in a URL are never printed (``rtsp://***@host/...``).

``PacedSource`` replays a file at its own timestamps (``--realtime`` for files), so a file can
stand in for a camera.

``run`` is real-time translation: the decode, engine and output stages of ``Pipeline`` with
batches that close on size or on ``max_wait`` (whichever comes first), a drop policy (``oldest``
for live inputs: when translation falls behind, the oldest waiting frame is discarded and
counted; ``block`` for files: nothing is lost, the reader waits), and the latency from capture
to publish measured for every frame and reported as p50/p95/max.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from .errors import InputError, UsageError
from .io import Frame, Source, _is_eof, _video_stream, redact, resize
from .pipeline import Pipeline

log = logging.getLogger("streamgan")

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp")
ENDED = "the server ended the stream"
# a model slower than its camera comes free at any point of a frame interval: when the next frame
# is due within this share of an interval, it waits for that frame rather than start on one that
# has waited the rest (frames then wait at most about 0.7 of an interval, for a few % of the rate)
FRESH_WAIT = 0.3
_V4L2 = re.compile(r"^/dev/video\d+$")


def is_live(src) -> bool:
    """A camera-like input: a streaming URL, an HLS playlist, or a V4L2 device."""
    s = str(src)
    scheme = s.split("://", 1)[0].lower() if "://" in s else ""
    if scheme in LIVE_SCHEMES:
        return True
    if scheme in ("http", "https"):
        return ".m3u8" in s.lower() or "mjpg" in s.lower()
    return bool(_V4L2.match(s))


def open_options(src, rtsp_transport: str = "tcp") -> tuple[str | None, dict]:
    """(FFmpeg format, demuxer options) for a live input."""
    s = str(src)
    if rtsp_transport not in ("tcp", "udp"):
        raise UsageError(f"--rtsp-transport must be tcp or udp, not '{rtsp_transport}'")
    scheme = s.split("://", 1)[0].lower() if "://" in s else ""
    if scheme in ("rtsp", "rtsps"):
        # probe 0.1 s (not FFmpeg's 5 s): what is read while probing arrives later in one burst
        return None, {"rtsp_transport": rtsp_transport, "max_delay": "500000",
                      "analyzeduration": "100000",
                      "reorder_queue_size": "64" if rtsp_transport == "udp" else "0"}
    if scheme in ("http", "https"):
        return None, {"reconnect": "0", "live_start_index": "-1"} if ".m3u8" in s.lower() else {}
    if scheme == "udp":
        return None, {"fifo_size": "1000000", "overrun_nonfatal": "1"}
    if _V4L2.match(s):
        return "v4l2", {}
    return None, {}


def _open_error(url: str, e: Exception, elapsed: float, timeout: float) -> InputError:
    """One line for a failed open; never the URL's credentials (FFmpeg's own text has them)."""
    name = redact(url)
    strerror = getattr(e, "strerror", None) or type(e).__name__
    if isinstance(e, av.error.ConnectionRefusedError):
        return InputError(f"{name}: connection refused (nothing listens there, or a firewall)")
    if isinstance(e, av.error.HTTPUnauthorizedError) or "401" in strerror:
        return InputError(f"{name}: the server refused the credentials (401 Unauthorized); "
                          "check user:password in the URL")
    if isinstance(e, av.error.HTTPForbiddenError) or "403" in strerror:
        return InputError(f"{name}: access forbidden (403)")
    if isinstance(e, av.error.HTTPNotFoundError) or "404" in strerror:
        return InputError(f"{name}: no such stream on the server (404 Not Found); check the path")
    if isinstance(e, av.error.ExitError) or elapsed >= 0.9 * timeout:
        return InputError(f"{name}: no answer within {timeout:g} s (unreachable, or not a "
                          "stream server)")
    if isinstance(e, av.error.FileNotFoundError):
        return InputError(f"{name}: no such device or file")
    if isinstance(e, av.error.PermissionError):
        return InputError(f"{name}: permission denied")
    if isinstance(e, av.error.OSError) and getattr(e, "errno", None) == 5 and "://" in url:
        return InputError(f"{name}: cannot connect (host name not found or network error)")
    return InputError(f"{name}: cannot open ({strerror})")


def open_live(url: str, *, rtsp_transport: str = "tcp", open_timeout: float = 10.0,
              read_timeout: float = 10.0):
    """av.open for a live input, every failure turned into one clear InputError."""
    fmt, opts = open_options(url, rtsp_transport)
    if fmt is None and not is_live(url) and not Path(url).exists() and "://" not in url:
        raise InputError(f"{url}: no such file")
    t0 = time.monotonic()
    try:
        c = av.open(url, format=fmt, options=opts, timeout=(open_timeout, read_timeout))
        if "analyzeduration" in opts and c.streams.video and \
                not c.streams.video[0].codec_context.width:
            c.close()  # the short probe missed the frame size: probe the usual way
            opts.pop("analyzeduration")
            c = av.open(url, format=fmt, options=opts, timeout=(open_timeout, read_timeout))
        return c
    except av.FFmpegError as e:
        raise _open_error(url, e, time.monotonic() - t0, open_timeout) from None


class StreamStopped(Exception):
    """Raised inside LiveSource when its stop event is set."""


@dataclass
class LiveStats:
    """Counters a live source keeps (read from other threads; plain ints are enough)."""

    frames: int = 0
    reconnects: int = 0
    stalls: int = 0
    bad_packets: int = 0
    skipped: int = 0  # frames with a timestamp going backwards (duplicates) that were dropped
    connected: bool = False
    last_error: str = ""


class LiveSource:
    """Frames from a live input, reconnecting when it drops; each ``Frame`` gets ``captured``.

    ``size`` (w, h): scale to this while converting to RGB (the model's processing size).
    Frames keep the geometry of the first connection: a stream whose resolution changes midway
    is scaled back to it (with a warning), a codec change after a reconnect is reported.
    """

    def __init__(self, url, *, size: tuple[int, int] | None = None, rtsp_transport: str = "tcp",
                 stall_timeout: float = 10.0, open_timeout: float | None = None,
                 reconnect: int = 5, backoff: tuple[float, float] = (0.5, 8.0),
                 max_frames: int | None = None, duration: float | None = None,
                 stop: threading.Event | None = None):
        self.url = str(url)
        self.name = redact(self.url)
        if stall_timeout <= 0:
            raise UsageError("--stall-timeout must be positive")
        self.rtsp_transport = rtsp_transport
        self.stall_timeout = float(stall_timeout)
        self.open_timeout = float(open_timeout if open_timeout is not None
                                  else max(5.0, stall_timeout))
        self.reconnect = int(reconnect)
        self.backoff = backoff
        self.max_frames, self.duration = max_frames, duration
        self.stop = stop or threading.Event()
        self.stats = LiveStats()
        self.size = size
        self._connect(first=True)

    # -- connection -----------------------------------------------------------------------
    def _connect(self, first: bool = False) -> None:
        """Open the URL (bounded by the open and stall timeouts) and set up its video stream."""
        self.container = open_live(self.url, rtsp_transport=self.rtsp_transport,
                                   open_timeout=self.open_timeout,
                                   read_timeout=self.stall_timeout)
        self._init_stream(first=first)

    def _init_stream(self, first: bool) -> None:
        stream = _video_stream(self.container, self.url)
        # slice threads only: frame threading would hold frames back (one per thread) and add
        # that to every frame's latency
        stream.thread_type = "SLICE"
        if stream.codec_context.width * stream.codec_context.height <= 1280 * 720:
            stream.codec_context.thread_count = 1  # small frames: no thread pool to contend
        cc = stream.codec_context
        if first:
            self.width, self.height = cc.width, cc.height
            if not self.width or not self.height:
                self.container.close()
                raise InputError(f"{self.name}: video stream has no frame size")
            self.codec = cc.name
            self.time_base = stream.time_base or Fraction(1, 90000)
            rate = stream.average_rate or stream.guessed_rate
            self.frame_rate = rate if rate and 1 <= rate <= 240 else None
            self.audio_stream = None  # live audio is not carried to the outputs
        else:
            if cc.name != self.codec:
                log.warning("%s: codec changed from %s to %s after reconnecting", self.name,
                            self.codec, cc.name)
                self.codec = cc.name
        self.stream = stream
        self._in_tb = stream.time_base or self.time_base
        self.stats.connected = True

    @property
    def step(self) -> int:
        """One nominal frame interval in ``time_base`` units."""
        rate = self.frame_rate or Fraction(25)
        return max(1, int(round(1 / (rate * self.time_base))))

    def _close_container(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        self.container = None
        self.stats.connected = False

    def _reconnect(self, reason: str) -> None:
        """Reopen with exponential backoff; InputError after ``reconnect`` failed attempts."""
        self._close_container()
        self.stats.last_error = reason
        if self.reconnect <= 0:
            if reason == ENDED:
                raise StreamStopped  # no reconnecting asked for: the end of the stream is the end
            raise InputError(f"{self.name}: {reason}")
        log.warning("%s: %s; reconnecting", self.name, reason)
        delay, cap = self.backoff
        for attempt in range(1, self.reconnect + 1):
            if self.stop.wait(min(cap, delay * 2 ** (attempt - 1))):
                raise StreamStopped
            try:
                self._connect()
            except InputError as e:
                self.stats.last_error = str(e)
                log.warning("%s (reconnect attempt %d of %d)", e, attempt, self.reconnect)
                if self.container is not None:
                    self._close_container()
                continue
            self.stats.reconnects += 1
            log.warning("%s: reconnected (attempt %d)", self.name, attempt)
            return
        raise InputError(f"{self.name}: {reason}; gave up after {self.reconnect} reconnect "
                         f"attempts ({self.stats.last_error.removeprefix(self.name + ': ')})")

    # -- frames ---------------------------------------------------------------------------
    _reading = False

    def __iter__(self) -> Iterator[Frame]:
        self._reading = True
        try:
            yield from self._frames()
        finally:
            self._reading = False
            if self.container is not None:
                self._close_container()

    def _frames(self) -> Iterator[Frame]:
        index = 0
        last_out: int | None = None  # last output pts (time_base units)
        last_wall = None
        try:
            if self.container is None:  # closed after setup (see fresh()): connect again
                try:
                    self._connect()
                except InputError as e:
                    self._reconnect(str(e).removeprefix(self.name + ": "))
            while not self.stop.is_set():
                # one connection: map its timestamps onto our continuous timeline
                base = None  # raw pts that maps to seg_start
                seg_start = 0 if last_out is None else last_out + max(
                    self.step, int((time.monotonic() - last_wall) / self.time_base))
                pending_none = 0
                reason = None
                last_frame_at = time.monotonic()
                try:
                    for packet in self.container.demux():  # all streams: audio alone
                        if self.stop.is_set():          # flowing is still a video stall
                            raise StreamStopped
                        if packet.stream is not self.stream:
                            if time.monotonic() - last_frame_at > self.stall_timeout:
                                raise _Stall
                            continue
                        arrived = time.perf_counter()  # capture: when its data came in
                        try:
                            frames = packet.decode()
                        except av.error.InvalidDataError:
                            self.stats.bad_packets += 1
                            continue
                        if not frames and time.monotonic() - last_frame_at > self.stall_timeout:
                            raise _Stall
                        for f in frames:
                            captured = arrived
                            last_frame_at = time.monotonic()
                            raw = f.pts
                            if raw is None:
                                out = seg_start + pending_none * self.step if base is None \
                                    else last_out + self.step
                                pending_none += base is None
                            else:
                                raw = int(Fraction(raw) * self._in_tb / self.time_base) \
                                    if self._in_tb != self.time_base else raw
                                if base is None:
                                    base = raw - pending_none * self.step
                                out = raw - base + seg_start
                            if last_out is not None and out <= last_out:
                                if raw is not None and (last_out - out) * self.time_base > 1:
                                    # the camera's clock jumped back: continue from here
                                    base = raw - (last_out + self.step - seg_start)
                                    out = last_out + self.step
                                else:
                                    self.stats.skipped += 1  # a repeated timestamp
                                    continue
                            if self.duration is not None and \
                                    float(out * self.time_base) >= self.duration - 1e-9:
                                return
                            yield self._frame(f, out, index, captured)
                            last_out, last_wall = out, time.monotonic()
                            index += 1
                            self.stats.frames = index
                            if self.max_frames is not None and index >= self.max_frames:
                                return
                    reason = ENDED
                except _Stall:
                    reason = f"stalled: no frame for {self.stall_timeout:g} s"
                except av.error.ExitError:
                    reason = f"stalled: no data for {self.stall_timeout:g} s"
                except av.FFmpegError as e:
                    reason = ENDED if _is_eof(e) else \
                        f"the stream dropped ({getattr(e, 'strerror', None) or type(e).__name__})"
                if reason.startswith("stalled"):
                    self.stats.stalls += 1
                if last_wall is None:
                    last_wall = time.monotonic()
                self._reconnect(reason)
        except StreamStopped:
            return

    def fresh(self) -> None:
        """Drop the connection made to learn the geometry, so that frames the server sent
        while the engine and outputs were being set up are not read as if they were new."""
        self._close_container()

    def _frame(self, f, pts: int, index: int, captured: float) -> Frame:
        if (f.width, f.height) != (self.width, self.height) and not getattr(self, "_warned", 0):
            self._warned = 1
            log.warning("%s: resolution changed from %dx%d to %dx%d; scaling to %dx%d",
                        self.name, self.width, self.height, f.width, f.height, self.width,
                        self.height)
        w, h = self.size or (self.width, self.height)
        if (f.width, f.height) != (w, h):
            img = f.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
        else:
            img = f.to_ndarray(format="rgb24")
        frame = Frame(img, pts, self.time_base, index)
        frame.captured = captured
        return frame

    def close(self) -> None:
        """Stop; the container is closed here only when no thread is reading it (a reading
        thread closes it itself when it sees the stop, so FFmpeg is never closed under it)."""
        self.stop.set()
        if self.container is not None and not self._reading:
            self._close_container()


class _Stall(Exception):
    pass


class _Wrapped:
    """A file source's geometry seen through a wrapper; ``size`` (what the decoder scales to) is the
    wrapped source's own, so a change (``--size auto``) reaches the decoder."""

    def __init__(self, source: Source):
        self.source = source
        for name in ("width", "height", "time_base", "frame_rate", "audio_stream"):
            setattr(self, name, getattr(source, name))

    @property
    def size(self):
        return self.source.size

    @size.setter
    def size(self, value) -> None:
        self.source.size = value


class PacedSource(_Wrapped):
    """A file played at the pace of its own timestamps (``--realtime``), like a camera."""

    def __init__(self, source: Source, stop: threading.Event | None = None):
        super().__init__(source)
        self.stop = stop or threading.Event()
        self.name = redact(source.path)
        self.stats = LiveStats(connected=True)

    def __iter__(self) -> Iterator[Frame]:
        t0 = first = None
        for frame in self.source:
            t = frame.time if frame.time is not None else frame.index / float(
                self.frame_rate or 25)
            if t0 is None:
                t0, first = time.perf_counter(), t
            due = t0 + (t - first)
            wait = due - time.perf_counter()
            if wait > 0 and self.stop.wait(wait):
                return
            frame.captured = max(due, time.perf_counter()) if wait > 0 else due
            self.stats.frames += 1
            yield frame

    def close(self) -> None:
        self.stop.set()
        self.source.close()


class CaptureStamped(_Wrapped):
    """A file read as fast as the pipeline takes it, each frame stamped when decoded."""

    def __init__(self, source: Source):
        super().__init__(source)
        self.name = redact(source.path)
        self.stats = LiveStats(connected=True)
        self.stop = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.source:
            frame.captured = time.perf_counter()
            self.stats.frames += 1
            yield frame

    def close(self) -> None:
        self.source.close()


class Latency:
    """Capture-to-publish latency per frame: count, p50, p95, max (seconds).

    Keeps the last ``keep`` samples for the percentiles (an hour at 30 fps by default) and the
    maximum over everything.
    """

    def __init__(self, keep: int = 108_000):
        self._samples: deque = deque(maxlen=keep)
        self.count = 0
        self.max = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)
            self.count += 1
            self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float:
        with self._lock:
            if not self._samples:
                return math.nan
            return float(np.percentile(np.fromiter(self._samples, float), q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    def summary(self) -> str:
        if not self.count:
            return "latency: no frame published"
        return (f"latency capture->publish p50 {1000 * self.p50:.1f} ms, p95 "
                f"{1000 * self.p95:.1f} ms, max {1000 * self.max:.1f} ms")

    def as_dict(self) -> dict:
        return {"count": self.count, "p50_s": self.p50, "p95_s": self.p95, "max_s": self.max}


class Stages:
    """Where a frame's latency goes: waiting for the engine (capture to the start of its engine
    call), the model (its engine call) and output (the call's end to published: encode, write,
    send). Each a ``Latency``."""

    NAMES = ("wait", "model", "output", "beyond")

    def __init__(self):
        self.wait, self.model, self.output = Latency(), Latency(), Latency()
        self.beyond = Latency()  # per frame: its latency beyond its own engine call (wait + output)

    @staticmethod
    def split(frame, published: float) -> tuple[float, float, float, float] | None:
        """(wait, model, output, beyond: wait + output) seconds of a frame published at
        ``published`` (perf_counter); None for a frame that went through no timed engine call."""
        started = getattr(frame, "started", None)
        finished = getattr(frame, "finished", None)
        if started is None or finished is None:
            return None
        wait, output = max(0.0, started - frame.captured), max(0.0, published - finished)
        return wait, finished - started, output, wait + output

    def add(self, frame, published: float) -> None:
        times = self.split(frame, published)
        if times is not None:
            for name, seconds in zip(self.NAMES, times):
                getattr(self, name).add(seconds)

    def summary(self) -> str:
        if not self.model.count:
            return ""
        return (f"p95 by stage: waiting {1000 * self.wait.p95:.1f} ms, model "
                f"{1000 * self.model.p95:.1f} ms, encode+publish {1000 * self.output.p95:.1f} ms; "
                f"beyond each frame's own engine call {1000 * self.beyond.p95:.1f} ms")

    def as_dict(self) -> dict:
        return {name: getattr(self, name).as_dict() for name in self.NAMES}


@dataclass
class LiveOptions:
    """Real-time knobs shared by the CLI, ``Translator.stream`` and ``serve``."""

    realtime: bool | None = None  # None: on for live inputs, off for files
    drop: str | None = None  # oldest | block; None: oldest for live/realtime, block otherwise
    max_wait: float | None = None  # seconds a batch may wait to fill; None: 0 (take what waits)
    rtsp_transport: str = "tcp"
    stall_timeout: float = 10.0
    open_timeout: float | None = None
    reconnect: int = 5
    queue_size: int | None = None
    max_age: float | None = None  # drop=oldest: skip frames older than this (default 1 frame)
    # drop=oldest: the free engine waits up to this long for a frame due that soon rather than
    # start on one that has waited most of a frame interval (default FRESH_WAIT of an interval; 0: never)
    fresh_wait: float | None = None
    auto_size: bool = False  # --size auto: the model's size follows the engine (streamgan.autosize)
    min_size: int | None = None  # its floor (short side; default autosize.FLOOR_SHARE of the start)

    def check(self) -> "LiveOptions":
        if self.drop not in (None, "oldest", "block"):
            raise UsageError(f"--drop must be 'oldest' or 'block', not '{self.drop}'")
        if self.max_wait is not None and self.max_wait < 0:
            raise UsageError("--max-wait must not be negative")
        if self.rtsp_transport not in ("tcp", "udp"):
            raise UsageError(f"--rtsp-transport must be tcp or udp, not '{self.rtsp_transport}'")
        if self.stall_timeout <= 0:
            raise UsageError("--stall-timeout must be positive")
        if self.min_size is not None and (not self.auto_size or self.min_size < 16):
            raise UsageError("--min-size is the floor of --size auto (a short side of at least 16)"
                             if self.auto_size else "--min-size goes with --size auto")
        return self


def open_source(src, translator, options: LiveOptions, *, frames: int | None = None,
                duration: float | None = None, start: float = 0.0,
                stop: threading.Event | None = None):
    """A LiveSource for live inputs, a PacedSource for --realtime files, else stamped file."""
    options.check()
    if is_live(src):
        probe = LiveSource(src, rtsp_transport=options.rtsp_transport,
                           stall_timeout=options.stall_timeout, open_timeout=options.open_timeout,
                           reconnect=options.reconnect, max_frames=frames, duration=duration,
                           stop=stop)
        size = translator.processing_size(probe.width, probe.height) if translator else None
        if size and size != (probe.width, probe.height):
            probe.size = size
        return probe
    source = Source(src, start=start, duration=duration, max_frames=frames)
    if translator is not None:
        size = translator.processing_size(source.width, source.height)
        if size != (source.width, source.height):
            source.size = size
    if options.realtime:
        return PacedSource(source, stop)
    return CaptureStamped(source)


def resolve(options: LiveOptions, src) -> tuple[bool, str]:
    """(real-time?, drop policy) for this input."""
    live = is_live(src)
    realtime = live if options.realtime is None else (options.realtime or live)
    drop = options.drop or ("oldest" if live else "block")
    return realtime, drop


@dataclass
class LiveResult:
    frames: int
    dropped: int
    seconds: float
    latency: Latency
    reconnects: int = 0
    stalls: int = 0
    outputs: list = field(default_factory=list)  # (name, frames written, error or "")
    span: float = 0.0  # seconds from the first frame published to the last
    engine_seconds: float = 0.0  # time in engine calls during the run
    batches: int = 0  # engine calls
    stages: Stages = field(default_factory=Stages)
    autosize: object = None  # the run's AutoSize (--size auto), else None

    @property
    def fps(self) -> float:
        """Published frames per second while frames flowed (set-up time left out)."""
        if self.span > 0 and self.frames > 1:
            return (self.frames - 1) / self.span
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        dropped = f"{self.dropped} dropped"
        if self.dropped and self.frames:
            share = self.dropped / (self.frames + self.dropped)
            dropped += f" ({100 * share:.0f}%, spread evenly: the model kept up with " \
                       f"{self.fps:.1f} fps)"
        out = [f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps), "
               f"{dropped}, {self.reconnects} reconnects", self.latency.summary()]
        if self.stages.summary():
            out.append(self.stages.summary())
        if self.autosize is not None:
            out += self.autosize.lines()
        for name, n, err in self.outputs:
            out.append(f"  {name}: {n} frames" + (f" (FAILED: {err})" if err else ""))
        return out


def warm_up(translator, size: tuple[int, int]) -> None:
    """Run the engine once at this size and batch, so the first live frames are not dropped
    while a backend compiles for a new shape."""
    w, h = size
    translator.prepare(w, h)  # a backend that builds per shape (TensorRT) does it now
    for n in sorted({1, translator.batch_size}):
        translator.warm_up(n, w, h)


def _frame_time(translator, size: tuple[int, int], calls: int = 3) -> float:
    """The engine's time for one frame at ``size`` (the median of a few calls, engine warm)."""
    warm_up(translator, size)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        translator.warm_up(1, *size)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def translate_frames(translator, src, options: LiveOptions | None = None, *,
                     frames: int | None = None, duration: float | None = None,
                     start: float = 0.0, stop: threading.Event | None = None,
                     on_ready: Callable | None = None,
                     stats: dict | None = None) -> Iterator[tuple[Frame, np.ndarray]]:
    """Yield (input frame, translated image at the processing size) in real time.

    The input frame carries ``captured`` (perf_counter when decoded). ``on_ready(source)`` is
    called once the input's geometry is known, before the first frame is read (open the outputs
    there). ``stats``, if given, gets the live counters ("source", "pipeline").
    """
    options = (options or LiveOptions()).check()
    realtime, drop = resolve(options, src)
    opts = LiveOptions(**{**options.__dict__, "realtime": realtime})
    source = open_source(src, translator, opts, frames=frames, duration=duration, start=start,
                         stop=stop)
    t_setup = time.perf_counter()
    auto = None
    try:
        warm_up(translator, source.size or (source.width, source.height))
        if options.auto_size and realtime:
            from .autosize import AutoSize

            auto = AutoSize(source, float(source.frame_rate or 25), options.min_size)
            auto.calibrate(lambda size: _frame_time(translator, size))  # every size built now
        if on_ready is not None:
            on_ready(source)
    except BaseException:
        source.close()
        raise
    if isinstance(source, LiveSource) and time.perf_counter() - t_setup > 2.0 / float(
            source.frame_rate or 25):
        source.fresh()
    rate = float(source.frame_rate or 25)
    # default: never wait for a batch to fill; frames already waiting (when the engine has
    # fallen behind) still go in together
    max_wait = options.max_wait if options.max_wait is not None else 0.0
    batch = translator.batch_size
    qsize = options.queue_size or max(4, 2 * batch)  # absorbs the bursts a network delivers
    # no standing queue: a frame that has waited more than a frame interval is skipped (counted
    # as dropped) when a newer one waits, so the engine, when free, takes the newest frame; a
    # burst of frames arriving together (at connection, after a network hiccup) is kept whole
    max_age = options.max_age if options.max_age is not None else 1.0 / rate
    fresh_wait = options.fresh_wait if options.fresh_wait is not None else FRESH_WAIT * max_age
    key = translator.open_stream(redact(src))
    process = translator.processor(key) if auto is None else auto.wrap(translator.processor(key))
    pipe = Pipeline(source, process, batch_size=batch, max_wait=max_wait,
                    queue_size=qsize, drop=drop, max_age=max_age if drop == "oldest" else None,
                    fresh_wait=fresh_wait,
                    out_queue_size=max(4, 2 * batch))  # encoding never holds the engine back
    if stats is not None:
        stats.update(source=source, pipeline=pipe, autosize=auto)
    try:
        for frame, out in pipe:
            yield frame, out
    finally:
        source.stop.set() if hasattr(source, "stop") else None
        translator.close_stream(key)
        pipe.close()
        source.close()


def stream(translator, src, *, on_frame: Callable[[Frame], None] | None = None,
           frames: int | None = None, duration: float | None = None, start: float = 0.0,
           options: LiveOptions | None = None, realtime: bool = False,
           open_options: dict | None = None, timeout: float | None = None) -> Iterator[Frame]:
    """``Translator.stream`` for live inputs: translated frames at the source size, in real time.

    Each yielded ``Frame`` has ``captured`` (perf_counter at decode) and ``latency`` (seconds
    from capture until it was handed over, just before ``on_frame``).
    """
    options = options or LiveOptions()
    if realtime and not options.realtime:
        options = LiveOptions(**{**options.__dict__, "realtime": True})
    if open_options and open_options.get("rtsp_transport") in ("tcp", "udp"):
        options = LiveOptions(**{**options.__dict__,
                                 "rtsp_transport": open_options["rtsp_transport"]})
    if timeout is not None and options.open_timeout is None:
        options = LiveOptions(**{**options.__dict__, "open_timeout": float(timeout)})
    info: dict = {}
    for frame, out in translate_frames(translator, src, options, frames=frames,
                                          duration=duration, start=start, stats=info):
        src_obj = info["source"]
        if out.shape[1] != src_obj.width or out.shape[0] != src_obj.height:  # (--size auto: any size)
            out = resize(out, src_obj.width, src_obj.height)
        result = Frame(out, frame.pts, frame.time_base, frame.index)
        result.captured = frame.captured
        result.latency = time.perf_counter() - frame.captured
        if on_frame is not None:
            on_frame(result)
        yield result


def close_outputs(outputs, who: str = "") -> None:
    """``outputs.close()``; then a recording that got no frame (the input never gave one) is
    removed rather than left as an empty file, and said. Only a file this run made and still
    had open (never one that was there before, nor one an output failed to open)."""
    empty = [o for o in outputs.outputs if o.kind == "record" and not o.frames and not o.failed
             and getattr(o, "enc", None) is not None]
    outputs.close()
    for o in empty:
        if o.failed or o.frames:
            continue
        try:
            if o.path.is_file() and not o.path.is_symlink():
                o.path.unlink()
                log.warning("%sno frame recorded; removed the empty %s", who, o.path)
        except OSError as e:
            log.warning("%sno frame recorded; could not remove the empty %s (%s)", who, o.path,
                        e.strerror or e)


def run(translator, src, outputs, options: LiveOptions | None = None, *,
        frames: int | None = None, duration: float | None = None, start: float = 0.0,
        stop: threading.Event | None = None, progress=None) -> LiveResult:
    """Translate ``src`` in real time into ``outputs`` (an ``outputs.FanOut``)."""
    latency, stages = Latency(), Stages()
    info: dict = {}
    t0 = time.perf_counter()
    n = 0
    first = last = 0.0
    said = False
    def ready(s):
        outputs.open(s.width, s.height, s.time_base, s.frame_rate)

    try:
        for frame, out in translate_frames(translator, src, options, frames=frames,
                                           duration=duration, start=start, stop=stop,
                                           stats=info, on_ready=ready):
            outputs.write(out, frame.pts)
            now = time.perf_counter()
            latency.add(now - frame.captured)
            stages.add(frame, now)
            first = first if n else now
            last = now
            n += 1
            pipe = info.get("pipeline")
            if not said and pipe is not None and pipe.dropped and n >= 30:
                said = True  # the real-time policy, said once
                log.warning("notice: the model takes %.0f ms a frame, more than the input's "
                            "%.0f ms between frames: the newest frame is translated each time "
                            "and the others are dropped, evenly (counted at the end)",
                            1000 * stages.model.p50,
                            1000 * (now - first) / max(n + pipe.dropped - 1, 1))
            if progress is not None:
                progress.update()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a live run ends: outputs are finalised below
    except InputError as e:
        if n:
            outputs.close()
            written = ", ".join(f"{name}: {k}" for name, k, err in outputs.report() if not err)
            raise InputError(f"{e}; frames written before that were kept ({written})") from None
        raise
    finally:
        close_outputs(outputs)
    pipe, source = info.get("pipeline"), info.get("source")
    return LiveResult(n, pipe.dropped if pipe else 0, time.perf_counter() - t0, latency,
                      getattr(getattr(source, "stats", None), "reconnects", 0),
                      getattr(getattr(source, "stats", None), "stalls", 0), outputs.report(),
                      last - first, pipe.engine_seconds if pipe else 0.0,
                      pipe.batches if pipe else 0, stages, info.get("autosize"))
