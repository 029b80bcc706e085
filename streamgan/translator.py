"""The public ``Translator``: one model on one backend, applied to arrays, videos or streams."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from . import engines, errors, plugins, temporal
from .errors import InputError, Interrupted, ModelError, UsageError
from .frames import backend_shapes, plan_size, translate_batch
from .io import (IMAGE_FORMATS, MIN_SIDE, EncodeOptions, Frame, Sink, Source, check_output,
                 redact, resize)
from .pipeline import Pipeline, Progress, stack

log = logging.getLogger("streamgan")


@dataclass
class Result:
    """What ``translate_video`` did."""

    output: Path | None
    frames: int
    bad_frames: int
    seconds: float
    engine_seconds: float
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Translator:
    """Translate frames with a plugin (``"derain"``), a plugin folder, or an ``.onnx`` file.

    ``backend``: auto | tensorrt | torch | openvino | onnxruntime. ``precision``: auto | fp32 |
    bf16 | fp16 | int8 (int8: the plugin's int8 model on OpenVINO; auto uses it on CPUs with
    VNNI/AMX when its card says it passed its quality gate). ``size``: run the model at this short side (overrides the card's policy).
    ``tile``: frames larger than this many pixels on a side are processed in overlapping tiles.
    ``channels``: "rgb" or "bgr" for arrays given to and returned by ``translate``.
    ``hwaccel``: "auto" (NVDEC when usable), "hardware" (required) or "software" decoding.
    ``threads``: CPU threads the backend may use (default: the backend's own choice, all cores).

    A temporal plugin (its card has a ``temporal`` section) keeps a state per stream: each video,
    stream or live camera has its own; ``translate`` calls continue one stream (``stream=`` names
    others) until ``reset()``.
    """

    def __init__(self, task_or_model_path: str | Path, backend: str = "auto",
                 precision: str = "auto", *, size: int | None = None, tile: int | None = None,
                 channels: str = "rgb", batch_size: int | None = None, hwaccel: str = "auto",
                 threads: int | None = None, night_exposure: str | None = None):
        if channels not in ("rgb", "bgr"):
            raise UsageError(f"channels must be 'rgb' or 'bgr', not '{channels}'")
        if tile is not None and tile < 64:
            raise UsageError(f"{errors.flag('--tile', 'tile')} {tile} is too small (at least 64)")
        for name, cli, v in (("size", "--size", size), ("batch_size", "--batch", batch_size),
                             ("threads", "--threads", threads)):
            if v is not None and not (isinstance(v, (int, np.integer)) and v > 0):  # as the command line does
                raise UsageError(f"{errors.flag(cli, name)} must be a positive integer, got {v!r}")
        self.model = plugins.load(task_or_model_path, night_exposure)
        norm = self.model.normalisation
        extra = {"threads": threads} if threads else {}
        card = self.model.card
        if precision == "int8" and card is not None and card.int8 is not None and self.model.int8 is None:
            raise UsageError(f"{self.task}'s int8 model is of its default night exposure "
                             f"({card.night_exposure.default if card.night_exposure else 'the weights'}); "
                             f"night exposure {self.model.exposure} has none: leave out --precision int8")
        if precision == "int8" or (precision == "auto" and self.model.int8_passed):
            extra["int8"] = self.model.int8
            if precision == "int8" and self.model.int8 is not None and not self.model.int8_passed:
                log.warning("notice: %s: its int8 model did not pass its quality gate (see the "
                            "card's int8 section); running it as asked", self.task)
        if tile is not None and self.model.temporal is not None:
            raise UsageError(f"{self.task} is a temporal model, which runs whole frames: "
                             f"{errors.flag('--tile', 'tile')} cannot be used with it")
        self.backend = engines.create(backend, self.model.onnx, precision,
                                      mean=norm.mean, std=norm.std, **extra)
        # a temporal model's state, per stream (streamgan.temporal); None for frame-by-frame models
        self.streams = None
        if self.model.temporal is not None:
            self.backend.state_io = [(st.input, st.output) for st in self.model.temporal.state]
            self.streams = temporal.Streams(self.model)
            self._api_stream = self.streams.open("translate()")
        self.size, self.tile, self.channels = size, tile, channels
        self.hwaccel = hwaccel  # video decoding on an NVIDIA GPU when FFmpeg can (gpu_io)
        self.multiple = self.model.processing.size_multiple
        self.batch_size = batch_size or getattr(self.backend, "preferred_batch", 1)
        # translate_video hands a backend that takes_i420 the decoder's YUV planes where nothing
        # is scaled, padded or tiled (see _i420_path); False keeps the RGB path everywhere
        self.yuv = True

    @property
    def task(self) -> str:
        return self.model.task

    def describe(self) -> str:
        exposure = f" ({self.model.exposure} night)" if self.model.exposure else ""
        return f"{self.task}{exposure} on {self.backend.describe()}"

    def processing_size(self, width: int, height: int) -> tuple[int, int]:
        p = self.model.processing
        return plan_size(width, height, p.policy, p.short_side, self.size)

    def prepare(self, width: int, height: int, batch: int | None = None) -> None:
        """Tell the backend the size frames will run at (the processing size) before a stream
        starts: a backend that builds per shape (TensorRT) does it now, never mid-stream."""
        self.backend.prepare(backend_shapes(batch or self.batch_size, height, width,
                                            self.multiple, self.tile))

    # -- arrays ---------------------------------------------------------------------------
    def run_batch(self, batch: np.ndarray, streams: list | None = None,
                  times: list | None = None) -> np.ndarray:
        """uint8 NHWC RGB at the processing size -> same; pads/tiles as needed. A temporal model
        runs each frame with the state of its stream (``streams``: one key per frame, default the
        ``translate()`` stream; ``times``: each frame's time in seconds, for gaps)."""
        if self.streams is None:
            return translate_batch(self._run_checked, batch, self.multiple, self.tile)
        keys = streams if streams is not None else [self._api_stream] * len(batch)
        return self.streams.run(self._run_temporal, batch, keys, times)

    def _run_temporal(self, frames: np.ndarray, states_for, i420: bool = False):
        """One engine call of a temporal model: frames of different streams with their states
        (``states_for(w, h)``: the states at the size the backend gets)."""
        new: list = []

        def call(padded):
            n, h, w = padded.shape[:3]
            if i420:
                h = h * 2 // 3
            given = states_for(w, h)
            out, state = (self.backend.run_i420 if i420 else self.backend.run)(padded, given)
            new[:] = self.streams.check(given, state)
            return self._checked_shape(padded, out, i420)

        out = call(frames) if i420 else translate_batch(call, frames, self.multiple, None)
        return out, new

    def warm_up(self, n: int, width: int, height: int) -> None:
        """One engine call of ``n`` frames of this size (a backend compiles for it), touching no
        stream's state."""
        x = np.zeros((n, height, width, 3), np.uint8)
        if self.streams is None:
            self.run_batch(x)
            return
        keys = [self.streams.open("warm-up") for _ in range(n)]
        try:
            self.run_batch(x, streams=keys)
        finally:
            for k in keys:
                self.streams.close(k)

    def reset(self, stream=None) -> None:
        """A temporal model starts over: the ``translate()`` stream (or the named ``stream``)
        goes back to the empty state. Nothing to do for a frame-by-frame model."""
        if self.streams is not None:
            self.streams.reset(self._keys(stream, 1)[0])

    def open_stream(self, name: str = ""):
        """A new stream for a temporal model (its own state); None for a frame-by-frame model."""
        return None if self.streams is None else self.streams.open(name)

    def close_stream(self, key) -> None:
        if self.streams is not None and key is not None:
            self.streams.close(key)

    def _run_checked(self, batch: np.ndarray) -> np.ndarray:
        return self._checked_shape(batch, self.backend.run(batch))

    def _checked_shape(self, batch: np.ndarray, out: np.ndarray, i420: bool = False) -> np.ndarray:
        if out.shape == batch.shape:
            return out
        if i420:
            raise ModelError(f"{self.model.onnx.name}: the model turns {batch.shape[2]}x"
                             f"{batch.shape[1] * 2 // 3} frames into another size; a generator "
                             "must return an image of its input's size and channels")
        # shapes only known once run (dynamic models)
        raise ModelError(f"{self.model.onnx.name}: the model turns {_shape(batch)} into "
                         f"{_shape(out)}; a generator must return an image of its input's "
                         "size and channels")

    def translate(self, frames: np.ndarray, stream=None) -> np.ndarray:
        """Translate uint8 frames (H x W x 3 or N x H x W x 3, RGB or BGR as constructed). A
        temporal model takes N frames as consecutive frames of one stream, continued by the next
        call until ``reset()``; ``stream`` (any hashable name) keeps a stream of its own."""
        try:
            arr = np.asarray(frames)
        except ValueError:  # a list of frames of different sizes
            raise UsageError("translate() takes frames of one size (a list of different sizes: one call "
                             "per size)") from None
        single = arr.ndim == 3
        if single:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise UsageError(f"translate() takes uint8 HxWx3 or NxHxWx3 arrays, got "
                             f"{arr.dtype} {arr.shape[1:] if single else arr.shape}")
        if arr.size == 0:
            raise UsageError(f"translate() got an empty array {arr.shape}")
        if min(arr.shape[1:3]) < MIN_SIDE:
            raise UsageError(f"translate() needs frames of at least {MIN_SIDE}x{MIN_SIDE} "
                             f"pixels, got {arr.shape[2]}x{arr.shape[1]}")
        if self.channels == "bgr":
            arr = arr[..., ::-1]
        out = self._translate_rgb(arr, self._keys(stream, len(arr)))
        if self.channels == "bgr":
            out = np.ascontiguousarray(out[..., ::-1])
        return out[0] if single else out

    def _keys(self, stream, n: int) -> list | None:
        if self.streams is None:
            return None
        return [self._api_stream if stream is None else ("api", stream)] * n

    def _translate_rgb(self, arr: np.ndarray, keys: list | None = None) -> np.ndarray:
        """uint8 NHWC RGB at any size -> the same: scaled to the processing size and back."""
        n, h, w, _ = arr.shape
        pw, ph = self.processing_size(w, h)
        self.prepare(pw, ph, n)
        if (pw, ph) != (w, h):
            small = np.stack([resize(a, pw, ph) for a in arr])
            return np.stack([resize(o, w, h) for o in self.run_batch(small, keys)])
        return self.run_batch(np.ascontiguousarray(arr), keys)

    def translate_i420(self, frames: np.ndarray, stream=None) -> np.ndarray:
        """Translate uint8 I420 frames (H*3/2 x W or N x H*3/2 x W: the Y plane, then U and V
        at half size, BT.601 limited range as FFmpeg's yuv420p; even sizes) into the same.
        Where the backend takes I420 and the frame runs at its own size, no colour conversion
        happens on the host (OpenVINO converts inside its graph); else FFmpeg's swscale
        converts around ``translate``. A temporal model: as ``translate``."""
        arr = np.asarray(frames)
        single = arr.ndim == 2
        if single:
            arr = arr[None]
        if arr.ndim != 3 or arr.dtype != np.uint8 or arr.shape[1] % 3 or arr.shape[2] % 2 \
                or (arr.shape[1] * 2 // 3) % 2:
            raise UsageError(f"translate_i420() takes uint8 I420 frames of an even size (H*3/2 "
                             f"x W), got {arr.dtype} {arr.shape}")
        n, rows, w = arr.shape
        h = rows * 2 // 3
        if min(w, h) < MIN_SIDE:
            raise UsageError(f"translate_i420() needs frames of at least {MIN_SIDE}x{MIN_SIDE} "
                             f"pixels, got {w}x{h}")
        keys = self._keys(stream, n)
        if self._runs_i420(w, h):
            self.prepare(w, h, n)
            out = self._run_i420(np.ascontiguousarray(arr), keys)
        else:
            rgb = np.stack([av.VideoFrame.from_ndarray(a, format="yuv420p").to_ndarray(
                format="rgb24") for a in arr])
            done = self._translate_rgb(rgb, keys)
            out = np.stack([av.VideoFrame.from_ndarray(o, format="rgb24").reformat(
                format="yuv420p").to_ndarray() for o in done])
        return out[0] if single else out

    # -- videos and streams ---------------------------------------------------------------
    def _open(self, src, *, start=0.0, duration=None, frames=None, keep_source=False,
              options=None, timeout=None) -> Source:
        source = Source(src, start=start, duration=duration, max_frames=frames,
                        keep_source=keep_source, options=options, timeout=timeout,
                        hwaccel=self.hwaccel)
        if min(source.width, source.height) < MIN_SIDE:
            source.close()
            raise InputError(f"{redact(src)}: frames of {source.width}x{source.height} are too "
                             f"small (at least {MIN_SIDE}x{MIN_SIDE})")
        size = self.processing_size(source.width, source.height)
        if size != (source.width, source.height):
            source.size = size
        try:
            self.prepare(*size)
        except BaseException:
            source.close()
            raise
        return source

    def processor(self, stream=None, i420: bool = False) -> Callable[[list], list]:
        """What a Pipeline runs on a batch of ``Frame``s: the frames of one stream (``stream``,
        from ``open_stream``: a temporal model's state) in RGB, or I420 where ``i420``."""
        def process(batch: list) -> list:
            keys = None if stream is None else [stream] * len(batch)
            times = [f.time for f in batch]
            if i420:
                return list(self._run_i420(stack(batch), keys, times))
            return list(self.run_batch(stack(batch), keys, times))
        return process

    def _run_i420(self, arr: np.ndarray, keys: list | None = None,
                  times: list | None = None) -> np.ndarray:
        if self.streams is None:
            return self._checked_shape(arr, self.backend.run_i420(arr), i420=True)
        keys = keys if keys is not None else [self._api_stream] * len(arr)
        return self.streams.run(lambda f, st: self._run_temporal(f, st, i420=True), arr, keys,
                                times, i420=True)

    def _runs_i420(self, w: int, h: int) -> bool:
        """Whether frames of w x h go to the backend as I420 (its colour conversion inside its
        graph): where it can, the frame runs at its own size (card policy 'native' or 'source',
        no --size scaling) and needs no padding or tiles."""
        return (self.yuv and self.backend.takes_i420 and self.processing_size(w, h) == (w, h)
                and w % self.multiple == 0 and h % self.multiple == 0 and w % 2 == 0
                and h % 2 == 0 and (self.tile is None or max(w, h) <= self.tile))

    def _i420_path(self, source: Source, sink: Sink, compare: bool) -> bool:
        """Decoder planes straight into the engine and its planes straight into the encoder (no
        swscale colour conversion): where the backend runs I420 at this size (``_runs_i420``)
        and both ends are 8-bit 4:2:0 of the same size."""
        w, h = source.width, source.height
        return (self._runs_i420(w, h) and not compare and not sink.image
                and source.size is None and source.pix_fmt == "yuv420p"
                and sink.video.pix_fmt == "yuv420p" and (sink.width, sink.height) == (w, h))

    def stream(self, src, *, start: float = 0.0, duration: float | None = None,
               frames: int | None = None, on_frame: Callable[[Frame], None] | None = None,
               options: dict | None = None, timeout: float | None = None,
               realtime: bool = False, live=None) -> Iterator[Frame]:
        """Yield translated ``Frame``s (source resolution, timestamps kept) as they are ready.

        Live inputs (rtsp://, rtmp://, srt://, HLS, /dev/videoN) and ``realtime=True`` go
        through ``streamgan.live``: reconnection, stall detection, frames dropped (oldest first)
        when translation falls behind, ``frame.latency`` set; ``live`` takes a
        ``streamgan.live.LiveOptions`` (see docs/LIVE.md).
        """
        from . import live as live_mod

        if realtime or live is not None or live_mod.is_live(src):
            yield from live_mod.stream(self, src, on_frame=on_frame, frames=frames,
                                       duration=duration, start=start, realtime=realtime,
                                       options=live, open_options=options, timeout=timeout)
            return
        source = self._open(src, start=start, duration=duration, frames=frames,
                            options=options, timeout=timeout)
        key = self.open_stream(redact(src))
        pipe = Pipeline(source, self.processor(key), batch_size=self.batch_size)
        try:
            for frame, out in pipe:
                if source.size:
                    out = resize(out, source.width, source.height)
                result = Frame(out, frame.pts, frame.time_base, frame.index)
                if on_frame is not None:
                    on_frame(result)
                yield result
        finally:
            pipe.close()
            source.close()
            self.close_stream(key)
            if source.bad_frames:
                log.warning("%s: %s", redact(src), source.damage_report())

    def translate_video(self, src, dst, *, overwrite: bool = False,
                        encode: EncodeOptions | None = None, start: float = 0.0,
                        duration: float | None = None, frames: int | None = None,
                        compare: bool = False, progress: bool | Progress = False,
                        keep_partial: bool = False, discard_partial: bool = False,
                        timeout: float | None = None) -> Result:
        """Translate a whole video into ``dst``; audio and timestamps kept.

        Ctrl-C (or SIGTERM/SIGHUP, when the command line turns them into ``KeyboardInterrupt``)
        stops early, still writing a playable file of the frames done, and raises
        ``Interrupted`` carrying the ``Result``. A partial result replaces an existing ``dst``
        (``overwrite=True``) only with ``keep_partial=True``; otherwise it is written beside it
        as <stem>.partial<ext>. ``discard_partial=True`` (batch jobs, which a rerun redoes) writes
        nothing at all when stopped. ``dst`` may be an image (.png, .jpg, ...) for a one-frame
        input.
        """
        check_output(dst, overwrite, src=src)
        t0 = time.perf_counter()
        source = self._open(src, start=start, duration=duration, frames=frames,
                            keep_source=compare, timeout=timeout)
        image_out = Path(dst).suffix.lower() in IMAGE_FORMATS
        if image_out and (source.expected_frames or 1) > 1:
            source.close()
            one = errors.flag("--frames 1", "frames=1")
            raise UsageError(f"{Path(dst).name}: an image output holds one frame and "
                             f"{redact(src)} has {source.expected_frames}; use a video output "
                             f"(mp4, mkv, ...) or {one}")
        if source.bit_depth > 8 and not image_out:
            log.warning("notice: %s is %d-bit video (%s); the output is 8-bit", redact(src),
                        source.bit_depth, source.pix_fmt)
        dropped = source.dropped_streams()
        if dropped and not image_out:
            log.warning("notice: %s: %s", redact(src), dropped)
        out_w = source.width * (2 if compare else 1)
        try:
            sink = Sink(dst, width=out_w, height=source.height, time_base=source.time_base,
                        frame_rate=source.frame_rate, options=encode,
                        audio_stream=source.audio_stream, rotation=0, overwrite=overwrite,
                        keep_partial=keep_partial)
        except BaseException:
            source.close()
            raise
        bar = progress if isinstance(progress, Progress) else Progress(
            source.expected_frames, enabled=bool(progress), label=self.task)
        i420 = source.i420 = self._i420_path(source, sink, compare)
        key = self.open_stream(redact(src))
        pipe = Pipeline(source, self.processor(key, i420), batch_size=self.batch_size)
        stopped: KeyboardInterrupt | None = None
        try:
            for frame, out in pipe:
                if frame.index == 0 and source.rotation and not sink.image:
                    sink.video.set_display_rotation(source.rotation)
                if compare:
                    if source.size:
                        out = resize(out, source.width, source.height)
                    out = np.hstack([frame.source, out])
                sink.write(out, frame.pts, i420=i420)
                sink.write_audio(source.audio_packets)
                bar.update()
        except KeyboardInterrupt as e:
            stopped = e
        except BaseException:
            pipe.close()
            self.close_stream(key)
            sink.abort()
            source.close()
            raise
        pipe.close()
        self.close_stream(key)
        sink.write_audio(source.audio_packets)
        bar.finish()
        if sink.frames_written == 0 and stopped is None:
            sink.abort()
            source.close()
            if start:
                raise UsageError(f"{errors.flag('--start', 'start')} {start:g} s is at or past "
                                 f"the end of {redact(src)}: nothing to translate")
            raise InputError(f"{redact(src)}: no frame could be decoded "
                             f"({source.damage_report()})" if source.bad_frames
                             else f"{redact(src)}: the video has no frames")
        path = sink.close(keep=not (stopped is not None and discard_partial),
                          partial=stopped is not None)
        source.close()
        result = Result(path, sink.frames_written, source.bad_frames,
                        time.perf_counter() - t0, pipe.engine_seconds, stopped is not None)
        if source.bad_frames:
            log.warning("%s: %s; %d frames written", redact(src), source.damage_report(),
                        sink.frames_written)
        if stopped is not None:
            how = "interrupted" if errors.stop_exit_code(stopped) == errors.EXIT_INTERRUPTED \
                else f"stopped by {stopped}"
            if path is None:
                msg = (f"{how}; the partial output was discarded" if discard_partial
                       else f"{how} before any frame was written")
            else:
                msg = f"{how}: {result.frames} frames written to {redact(path)}"
                if Path(path) != Path(dst):
                    msg += (f"; {redact(dst)} was left as it was "
                            f"({errors.flag('--keep-partial', 'keep_partial=True')} lets a "
                            "partial result replace it)")
            err = Interrupted(msg)
            err.exit_code = errors.stop_exit_code(stopped)
            err.result = result
            raise err
        return result


def _shape(a: np.ndarray) -> str:
    return "x".join(str(d) for d in a.shape[1:3]) + f"x{a.shape[3] if a.ndim == 4 else 1}"
