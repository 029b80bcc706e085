"""Live outputs: publish to a stream server, record to a file, record in fixed-length segments.

``make_outputs(["rtsp://host/out", "rec/cam.mp4"], segment=60)`` builds a ``FanOut`` that feeds
every translated frame to each output, so any number of them run at once from one decode and one
translation (each output encodes for its own needs: low-latency for publishing, segments that
each start on a key frame).

* ``rtsp://`` / ``rtsps://`` publish with RTSP ANNOUNCE/RECORD (TCP by default); ``rtmp://`` as
  FLV; ``srt://`` and ``udp://`` as MPEG-TS.
* a file records continuously; MP4/MOV are written fragmented (a fragment per key frame, one a
  second), so the recording made so far plays even if the process dies.
* with ``segment`` seconds, a file name becomes a series ``cam_00000.mp4, cam_00001.mp4, ...``
  (or the name's own ``%05d``); each segment starts at time 0 on a key frame and plays on its
  own; a segment appears under its name only once complete (its temp file carries the pid, so
  one left by a killed run is removed by the next run writing there).
* odd frame sizes are padded by one pixel to 4:2:0 unless ``EncodeOptions.exact_size``.
* without ``overwrite`` no file is ever replaced, also one that appears while the run goes on.

One output failing (a full disk, a publish target gone for good) is reported once and dropped;
the others keep going. A publish target that goes away is reconnected in the background (frames
meanwhile are not sent to it). Only when every output has failed does the run stop with
``OutputError``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import OutputError, StreamganError, UsageError
from .io import (IMAGE_FORMATS, EncodeOptions, check_output, discard_temp, make_temp,
                 output_size, pad_to, publish, redact, refuse_input)

log = logging.getLogger("streamgan")

STREAM_FORMATS = {"rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "flv", "rtmps": "flv",
                  "srt": "mpegts", "udp": "mpegts"}
_FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


def _scheme(target: str) -> str:
    return target.split("://", 1)[0].lower() if "://" in target else ""


def is_stream_target(target) -> bool:
    return _scheme(str(target)) in STREAM_FORMATS


class _Encoder:
    """One output container with one H.264 (or chosen codec) video stream."""

    def __init__(self, target: str, fmt: str, container_options: dict, *, width: int,
                 height: int, time_base: Fraction, rate: Fraction | None,
                 encode: EncodeOptions, gop: int, timeout: float | None = None,
                 name: str | None = None, ext: str = ""):
        self.name = name or redact(target)
        choice = encode.choice(ext)  # NVENC where it works, else the software encoder
        self.container = av.open(target, "w", format=fmt, options=container_options,
                                 timeout=timeout)
        try:
            enc = choice.name
            opts = encode.stream_options(choice)
            if enc in ("libx264", "libx265"):
                opts.setdefault("tune", "zerolatency")  # no look-ahead: a frame leaves at once
            elif enc.endswith("_nvenc"):
                opts.setdefault("zerolatency", "1")
                opts.setdefault("delay", "0")
            opts.update({"g": str(gop), "bf": "0"})
            if enc in ("libx264", "libx265") and width * height <= 1280 * 720:
                opts.setdefault("threads", "1")  # small frames: no thread pool to contend
            s = self.container.add_stream(enc, rate=rate or Fraction(25), options=opts)
            s.width, s.height, s.pix_fmt = output_size(width, height, encode)
            s.codec_context.time_base = time_base
            s.time_base = time_base
        except Exception:
            self.container.close()
            raise
        self.stream, self.tb = s, time_base
        self.src_size = (width, height)
        self.last_pts: int | None = None
        self.frames = 0

    def write(self, image: np.ndarray, pts: int) -> None:
        s = self.stream
        h, w = image.shape[:2]
        if (w, h) == self.src_size and (w, h) != (s.width, s.height):
            image = pad_to(image, s.width, s.height)  # odd size made even (output_size)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if (frame.width, frame.height) != (s.width, s.height):
            frame = frame.reformat(s.width, s.height, s.pix_fmt, interpolation="BICUBIC")
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        frame.pts, frame.time_base = pts, self.tb
        self.last_pts = pts
        self.container.mux(s.encode(frame))
        self.frames += 1

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()


class Output:
    """Base: an output that can fail without taking the others with it."""

    kind = "output"

    def __init__(self, name: str):
        self.name = name
        self.error = ""
        self.frames = 0

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def open(self, width, height, time_base, rate) -> None:
        raise NotImplementedError

    def write(self, image: np.ndarray, pts: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.close()


class StreamOutput(Output):
    """Publish to an RTSP (RECORD), RTMP, SRT or UDP server.

    When the server goes away mid-run, the output reconnects in the background (after 1, 2, 4,
    8, 8 ... s, ``reconnect`` attempts) while the other outputs carry on; frames produced while
    it is away are not sent (counted in ``skipped``). A reconnected stream starts on a key frame.
    """

    kind = "publish"

    def __init__(self, url: str, *, encode: EncodeOptions, rtsp_transport: str = "tcp",
                 timeout: float = 10.0, reconnect: int = 5):
        super().__init__(redact(url))
        self.url, self.encode = url, encode
        self.fmt = STREAM_FORMATS[_scheme(url)]
        self.options = {"rtsp_transport": rtsp_transport} if self.fmt == "rtsp" else {}
        if self.fmt == "flv":
            self.options = {"flvflags": "no_duration_filesize"}
        self.timeout = timeout
        self.reconnect = reconnect
        self.enc: _Encoder | None = None
        self.reconnects = 0
        self.skipped = 0
        self.down = ""  # why it is away while reconnecting
        self._closed = threading.Event()
        self._retry: threading.Thread | None = None

    def _connect(self) -> "_Encoder":
        width, height, time_base, rate = self.geometry
        _check_reachable(self.url, self.name, self.timeout)
        t0 = time.monotonic()
        enc = None
        try:
            enc = _Encoder(self.url, self.fmt, dict(self.options), width=width, height=height,
                           time_base=time_base, rate=rate, encode=self.encode,
                           gop=max(1, round(float(rate or 25))),
                           timeout=(self.timeout, self.timeout), name=self.name)
            enc.container.start_encoding()  # connect now (ANNOUNCE/RECORD), not at frame 1
            return enc
        except av.FFmpegError as e:
            if enc is not None:
                try:
                    enc.container.close()
                except Exception:
                    pass
            raise _publish_error(self.name, e, time.monotonic() - t0, self.timeout) from None

    def open(self, width, height, time_base, rate) -> None:
        self.geometry = (width, height, time_base, rate)
        self.enc = self._connect()

    def write(self, image, pts) -> None:
        enc = self.enc
        if enc is None:
            if self.down:
                self.skipped += 1  # reconnecting in the background
                return
            raise OutputError(f"{self.name}: not connected")
        try:
            enc.write(image, pts)
        except av.FFmpegError as e:
            why = f"publishing stopped ({getattr(e, 'strerror', None) or type(e).__name__})"
            self.enc = None
            _close_quietly(enc)
            if self.reconnect <= 0:
                raise OutputError(f"{self.name}: {why}") from None
            self.down = why
            self.skipped += 1
            log.error("%s: %s; reconnecting in the background, the other outputs continue",
                      self.name, why)
            self._retry = threading.Thread(target=self._reconnect, daemon=True,
                                           name="streamgan-publish-retry")
            self._retry.start()
            return
        self.frames += 1

    def _reconnect(self) -> None:
        delay = 1.0
        for attempt in range(1, self.reconnect + 1):
            if self._closed.wait(delay):
                return
            try:
                enc = self._connect()
            except OutputError as e:
                log.warning("%s (publish reconnect attempt %d of %d)", e, attempt,
                            self.reconnect)
                delay = min(8.0, delay * 2)
                continue
            if self._closed.is_set():
                _close_quietly(enc)
                return
            self.reconnects += 1
            self.down = ""
            self.enc = enc
            log.warning("%s: publishing again (reconnected)", self.name)
            return
        self.error = f"{self.name}: {self.down}; gave up after {self.reconnect} reconnect attempts"
        log.error("%s", self.error)

    def close(self) -> None:
        self._closed.set()
        if self._retry is not None:
            self._retry.join(self.timeout + 1)
        if self.down and not self.error:
            self.error = f"{self.name}: {self.down}; not reconnected before the end"
        if self.enc is not None:
            enc, self.enc = self.enc, None
            _close_quietly(enc)


_TCP_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}


def _check_reachable(url: str, name: str, timeout: float) -> None:
    """Try the server's TCP port first, from Python.

    PyAV connects an output while holding the GIL (and RTMP without any timeout), so a server
    that does not answer would freeze every other thread of the process (the other streams of a
    ``serve``) for as long as the connection attempt lasts. A plain socket waits without the GIL.
    """
    scheme = _scheme(url)
    if scheme not in _TCP_PORTS:
        return  # UDP, SRT: nothing to connect to
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or _TCP_PORTS[scheme]
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except ValueError:
        raise OutputError(f"{name}: not a valid URL") from None
    except ConnectionRefusedError:
        raise OutputError(f"{name}: cannot publish: connection refused") from None
    except (socket.timeout, TimeoutError):
        raise OutputError(f"{name}: cannot publish: no answer within {timeout:g} s") from None
    except socket.gaierror:
        raise OutputError(f"{name}: cannot publish: host name not found") from None
    except OSError as e:
        raise OutputError(f"{name}: cannot publish ({e.strerror or e})") from None


def _close_quietly(enc: "_Encoder") -> None:
    try:
        enc.close()
    except (av.FFmpegError, OSError):
        pass  # the server is gone: nothing left to flush to


def _publish_error(name: str, e: Exception, elapsed: float, timeout: float) -> OutputError:
    msg = getattr(e, "strerror", None) or type(e).__name__
    if isinstance(e, av.error.ConnectionRefusedError):
        return OutputError(f"{name}: cannot publish: connection refused")
    if "401" in msg:
        return OutputError(f"{name}: cannot publish: the server refused the credentials")
    if isinstance(e, av.error.ExitError) or elapsed >= 0.9 * timeout:
        return OutputError(f"{name}: cannot publish: no answer within {timeout:g} s")
    return OutputError(f"{name}: cannot publish ({msg})")


def _container_format(path: Path) -> tuple[str, dict]:
    # every packet goes to the file as it is muxed (not held in FFmpeg's write buffer, which a
    # well-compressed picture takes seconds to fill): a killed process leaves all but the last part
    flush = {"flush_packets": "1"}
    ext = path.suffix.lower()
    if ext in (".mp4", ".mov"):
        return ("mov" if ext == ".mov" else "mp4"), {**_FRAGMENTED, **flush}
    return {".mkv": "matroska", ".webm": "webm", ".avi": "avi", ".ts": "mpegts"}.get(
        ext, "mp4"), flush


class FileOutput(Output):
    """Record continuously into one file (written in place, playable while growing)."""

    kind = "record"

    def __init__(self, path, *, encode: EncodeOptions, overwrite: bool = False, src=None):
        self.path = _check_file(path, overwrite, src)
        super().__init__(str(self.path))
        self.encode, self.overwrite, self.src = encode, overwrite, src
        self.enc: _Encoder | None = None

    def open(self, width, height, time_base, rate) -> None:
        fmt, opts = _container_format(self.path)
        try:
            if self.overwrite and (self.path.exists() or self.path.is_symlink()):
                refuse_input(self.path, self.src)  # checked again: it may have changed since
                self.path.unlink()  # a link is removed, never written through
            # created here, exclusively and not through a link: a file made since stays
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW,
                             0o666))
        except FileExistsError:
            raise OutputError(f"{self.path} was created by something else before recording "
                              "started; it was left as it is") from None
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e})") from None
        try:
            self.enc = _Encoder(str(self.path), fmt, opts, width=width, height=height,
                                time_base=time_base, rate=rate, encode=self.encode,
                                gop=max(1, round(float(rate or 25))), name=self.name,
                                ext=self.path.suffix)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self.first_pts = None

    def write(self, image, pts) -> None:
        if self.first_pts is None:
            self.first_pts = pts
        try:
            self.enc.write(image, pts - self.first_pts)
        except OSError as e:
            raise OutputError(f"{self.path}: write failed ({e.strerror or e})") from None
        self.frames += 1

    def close(self) -> None:
        if self.enc is not None:
            enc, self.enc = self.enc, None
            try:
                enc.close()
            except OSError as e:
                raise OutputError(f"{self.path}: write failed ({e.strerror or e})") from None


def _check_file(path, overwrite: bool, src=None) -> Path:
    path = Path(path)
    if path.suffix.lower() == ".ts":
        folder = path.parent if str(path.parent) else Path(".")
        refuse_input(path, src)
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise OutputError(f"{path} exists; pass -y to overwrite")
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise OutputError(f"{folder}: output folder does not exist or is not writable")
        return path
    if path.suffix.lower() in IMAGE_FORMATS:
        raise OutputError(f"{path}: a live run records video (mp4, mkv, mov, webm, avi, ts)")
    return check_output(path, overwrite, src)


class SegmentOutput(Output):
    """Record into consecutive files of ``seconds`` each; every one plays on its own."""

    kind = "segments"

    def __init__(self, path, seconds: float, *, encode: EncodeOptions, overwrite: bool = False,
                 src=None):
        if seconds <= 0:
            raise UsageError("--segment must be a positive number of seconds")
        path = Path(path)
        if not re.search(r"%0?\d*d", path.name):
            path = path.with_name(f"{path.stem}_%05d{path.suffix or '.mp4'}")
        self.pattern = path
        first = Path(str(path) % 0)
        _check_file(first, overwrite, src)
        super().__init__(str(path))
        self.seconds, self.encode, self.overwrite = float(seconds), encode, overwrite
        self.src = src
        self.enc: _Encoder | None = None
        self.index = 0
        self.files: list[Path] = []
        self._tmp: Path | None = None

    def open(self, width, height, time_base, rate) -> None:
        self.geometry = (width, height, time_base, rate)

    def _start(self, pts: int) -> None:
        width, height, time_base, rate = self.geometry
        target = Path(str(self.pattern) % self.index)
        refuse_input(target, self.src)
        if target.exists() and not self.overwrite:
            raise OutputError(f"{target} exists; pass -y to overwrite")
        self._target = target
        self._tmp = make_temp(target)
        fmt, opts = _container_format(target)
        try:
            self.enc = _Encoder(str(self._tmp), fmt, opts, width=width, height=height,
                                time_base=time_base, rate=rate, encode=self.encode,
                                gop=max(1, round(float(rate or 25))), name=str(target),
                                ext=target.suffix)
        except OSError as e:
            discard_temp(self._tmp)
            raise OutputError(f"{target}: cannot write ({e.strerror or e})") from None
        self.seg_start = pts
        self.index += 1

    def _finish(self) -> None:
        if self.enc is None:
            return
        enc, self.enc = self.enc, None
        try:
            enc.close()
        except OSError as e:
            raise OutputError(f"{self._target}: write failed ({e.strerror or e})") from None
        if not enc.frames:  # stopped between opening a segment and its first frame: no file
            discard_temp(self._tmp)
            return
        try:
            done = publish(self._tmp, self._target, self.overwrite)
        except OutputError as e:  # the name was taken meanwhile: kept under another
            if getattr(e, "path", None) is None:
                raise
            log.error("%s", e)
            done = e.path
        self.files.append(done)
        log.info("segment %s done (%d frames)", done, enc.frames)

    def write(self, image, pts) -> None:
        _, _, tb, _ = self.geometry
        if self.enc is not None and (pts - self.seg_start) * tb >= self.seconds - 1e-6:
            self._finish()
        if self.enc is None:
            self._start(pts)
        try:
            self.enc.write(image, pts - self.seg_start)
        except OSError as e:
            raise OutputError(f"{self._target}: write failed ({e.strerror or e})") from None
        self.frames += 1

    def close(self) -> None:
        self._finish()


class FanOut:
    """Feeds each frame to every output; one failing output does not stop the others."""

    def __init__(self, outputs: list[Output], *, strict_open: bool = True):
        if not outputs:
            raise UsageError("no output given")
        self.outputs = outputs
        self.strict_open = strict_open
        self.opened = False

    def open(self, width: int, height: int, time_base: Fraction, rate) -> None:
        self.opened = True
        for o in self.outputs:
            try:
                o.open(width, height, time_base, rate)
            except (StreamganError, av.FFmpegError, OSError) as e:
                if self.strict_open:
                    self.close()
                    raise
                self._fail(o, e)
        self._check_alive()

    def _fail(self, o: Output, e: Exception) -> None:
        o.error = str(e) if isinstance(e, StreamganError) else f"{o.name}: {e}"
        others = [x for x in self.outputs if not x.failed]
        log.error("%s%s", o.error, "; the other outputs continue" if others else "")
        try:
            o.abort()
        except Exception:
            pass

    def _check_alive(self) -> None:
        if all(o.failed for o in self.outputs):
            raise OutputError("every output failed: " + "; ".join(o.error for o in self.outputs))

    def write(self, image: np.ndarray, pts: int) -> None:
        for o in self.outputs:
            if o.failed:
                continue
            try:
                o.write(image, pts)
            except (StreamganError, av.FFmpegError, OSError) as e:
                self._fail(o, e)
        self._check_alive()

    def close(self) -> None:
        for o in self.outputs:
            if o.failed:
                continue
            try:
                o.close()
            except (StreamganError, av.FFmpegError, OSError) as e:
                o.error = str(e)
                log.error("%s", o.error)

    def report(self) -> list[tuple[str, int, str]]:
        return [(o.name, o.frames, o.error) for o in self.outputs]


def split_targets(output: str | None) -> list[str]:
    """``-o``'s value as outputs: comma-separated (``rtsp://host/out,rec.mp4``); ``\\,`` is a comma
    inside a name (``-o 'take\\,2.mp4'`` writes ``take,2.mp4``)."""
    parts = [t.replace("\0", ",").strip()
             for t in (output or "").replace("\\,", "\0").split(",")]
    targets = [t for t in parts if t]
    if len(targets) > 1:
        for t in targets:
            if "://" not in t and not Path(t).suffix and not t.startswith("/dev/"):
                raise UsageError(f"-o {output}: a comma separates outputs, and '{t}' names no "
                                 "file type; write \\, for a comma inside a file name")
    return targets


def make_outputs(targets: list[str], *, encode: EncodeOptions | None = None,
                 segment: float | None = None, overwrite: bool = False,
                 rtsp_transport: str = "tcp", timeout: float = 10.0,
                 strict_open: bool = True, reconnect: int = 5, src=None) -> FanOut:
    """Outputs for these targets (URLs publish; files record, in segments when asked). ``src``:
    the input, which no output may overwrite."""
    encode = encode or EncodeOptions()
    outs: list[Output] = []
    for t in targets:
        t = str(t)
        if is_stream_target(t):
            outs.append(StreamOutput(t, encode=encode, rtsp_transport=rtsp_transport,
                                     timeout=timeout, reconnect=reconnect))
        elif "://" in t:
            raise UsageError(f"{redact(t)}: cannot publish to '{_scheme(t)}://' (use rtsp, "
                             "rtmp, srt or udp)")
        elif segment:
            outs.append(SegmentOutput(t, segment, encode=encode, overwrite=overwrite, src=src))
        else:
            outs.append(FileOutput(t, encode=encode, overwrite=overwrite, src=src))
    return FanOut(outs, strict_open=strict_open)
