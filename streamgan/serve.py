"""``streamgan serve config.yaml``: several live streams through one model in one process.

Each stream has its own reader thread (``live.LiveSource``: reconnect, stall detection) feeding
a small queue, in which a frame older than a frame interval is dropped (counted) when a newer one
waits, and its own output thread (``outputs.FanOut``: publish, record, segments).
One engine thread takes the newest frame of each stream in turn (round robin, so no camera
starves) and batches frames of several streams into one engine call only where that adds at most
a frame interval to the call's time, measured per processing size (on a CPU, where a second frame
costs a whole frame's time, each call takes one camera; on a GPU, several). Frames of different
processing sizes go in separate calls. Results go back to each stream's own output queue, so the
outputs stay separate.

A stream's failure (its camera gone for good, every output failed, its frames breaking the
model) stops that stream only; the others keep running. A slow stream never holds the engine:
when its output queue is full its result is dropped and counted.

A Prometheus endpoint on 127.0.0.1 (``/metrics``, ``metrics.py`` through prometheus-client)
gives per-stream fps, latency histograms (capture to publish and by stage), drops, reconnects
and state, and the engine's batching, on a bounded budget of connections.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, \
    model_validator

from . import live
from .errors import InputError, ModelError, OutputError, StreamganError, UsageError
from .io import EncodeOptions, redact
from .metrics import ServeMetrics, serve_metrics
from .outputs import FanOut, make_outputs
from .pipeline import stack

log = logging.getLogger("streamgan")



# -- configuration ------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricsConfig(_Strict):
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)  # 0: any free port (logged)


class StreamConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    input: str
    outputs: list[str] = Field(min_length=1)
    segment: float | None = Field(default=None, gt=0)  # seconds per recorded file
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    stall_timeout: float = Field(default=10.0, gt=0)
    reconnect: int = Field(default=5, ge=0)  # input and publish: failed attempts in a row
    realtime: bool | None = None  # files: pace by timestamps (default on in serve)
    drop: Literal["oldest", "block"] | None = None
    frames: int | None = Field(default=None, ge=1)  # stop this stream after this many

    def __repr_args__(self):  # never show credentials in a printed config
        for k, v in super().__repr_args__():
            yield k, (redact(v) if k == "input" else
                      [redact(o) for o in v] if k == "outputs" else v)


class ServeConfig(_Strict):
    model: str  # task name, plugin folder or .onnx file
    backend: str = "auto"
    precision: str = "auto"
    # a short side, or "auto": each camera's size lowered while the shared engine cannot keep up with
    # all of them (streamgan.autosize; the engine's time a frame against one over the cameras' total rate)
    size: int | Literal["auto"] | None = Field(default=None)
    min_size: int | None = Field(default=None, ge=16)  # the floor of size auto
    tile: int | None = Field(default=None, ge=64)
    night_exposure: str | None = None  # a day-to-night model's exposure (None: its card's default)
    # frames per engine call, across streams; None: one per stream (at most 8), or the
    # backend's preferred batch (a TensorRT engine's optimum) when that is larger
    batch: int | None = Field(default=None, ge=1, le=64)
    max_wait: float = Field(default=0.02, ge=0, le=5)  # seconds a batch may wait to fill
    queue: int = Field(default=4, ge=1, le=256)  # frames waiting per stream
    codec: str | None = None  # None: H.264, or VP9/AV1 for .webm recordings
    preset: str | None = None
    crf: int | None = None
    overwrite: bool = False
    metrics: MetricsConfig | None = Field(default_factory=MetricsConfig)
    streams: list[StreamConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _sizes(self):
        if isinstance(self.size, int) and self.size < 16:
            raise ValueError(f"size must be at least 16 or auto, got {self.size}")
        if self.min_size is not None and self.size != "auto":
            raise ValueError("min_size is the floor of size: auto")
        return self

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.streams]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stream names must be unique (repeated: {', '.join(dup)})")
        return self

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a task, a plugin folder or an .onnx file")
        return v


def load_config(path) -> ServeConfig:
    """Read and validate a serve config; any problem is one ``UsageError`` naming the field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with 'model' and 'streams'")
    try:
        cfg = ServeConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {err['msg']}"
            for err in e.errors())
        raise UsageError(f"{path}: {redact(problems)}") from None
    # relative model and output paths are relative to the config file
    base = path.resolve().parent
    m = Path(cfg.model)
    if not m.is_absolute() and (m.suffix == ".onnx" or "/" in cfg.model) and (base / m).exists():
        cfg.model = str(base / m)
    for s in cfg.streams:
        s.outputs = [o if "://" in o or Path(o).is_absolute() else str(base / o)
                     for o in s.outputs]
        if not ("://" in s.input or Path(s.input).is_absolute() or
                live.is_live(s.input)) and (base / s.input).exists():
            s.input = str(base / s.input)
    return cfg


# -- one stream ---------------------------------------------------------------------------------
class Stream:
    """A stream's reader, its frame queue, its output thread and its counters."""

    def __init__(self, cfg: StreamConfig, server: "Server"):
        self.cfg, self.server = cfg, server
        self.name = cfg.name
        self.state = "starting"
        self.error = ""
        self.frames_in = 0
        self.published = 0
        self.dropped = 0
        self.engine_errors = 0
        self.latency = live.Latency()
        self.stages = live.Stages()
        self._times: deque = deque(maxlen=256)  # publish times, for fps
        self.first_at = self.last_at = None  # monotonic times of the first and last publish
        self.pending: deque = deque()  # frames waiting for the engine (guarded by server.cond)
        self.maxlen = server.cfg.queue
        self.done: queue.Queue = queue.Queue(maxsize=max(4, 2 * server.batch))
        self.stop = threading.Event()
        self.source = None
        self.outputs: FanOut | None = None
        self.size = None
        self.auto = None  # size auto: this camera's AutoSize
        realtime = cfg.realtime if cfg.realtime is not None else True
        self.options = live.LiveOptions(realtime=realtime, drop=cfg.drop,
                                        rtsp_transport=cfg.rtsp_transport,
                                        stall_timeout=cfg.stall_timeout,
                                        reconnect=cfg.reconnect).check()
        _, self.drop = live.resolve(self.options, cfg.input)
        if not live.is_live(cfg.input) and cfg.drop is None and realtime:
            self.drop = "oldest"  # a paced file stands in for a camera
        self.reader = threading.Thread(target=self._read, name=f"streamgan-read-{self.name}",
                                       daemon=True)
        self.writer = threading.Thread(target=self._write, name=f"streamgan-out-{self.name}",
                                       daemon=True)
        self._input_done = False

    @property
    def alive(self) -> bool:
        return self.state in ("starting", "running")

    def fail(self, msg: str) -> None:
        if self.alive:
            self.state, self.error = "failed", msg
            log.error("stream %s: %s (the other streams keep running)", self.name, msg)
        self.stop.set()

    @property
    def fps(self) -> float:
        t = list(self._times)
        now = time.monotonic()
        t = [x for x in t if now - x <= 5.0]
        if len(t) < 2:
            return 0.0
        return (len(t) - 1) / max(t[-1] - t[0], 1e-6)

    # reader thread
    def _read(self) -> None:
        srv = self.server
        try:
            enc = EncodeOptions(codec=srv.cfg.codec, preset=srv.cfg.preset, crf=srv.cfg.crf,
                                audio="none")
            self.outputs = make_outputs(self.cfg.outputs, encode=enc, segment=self.cfg.segment,
                                        overwrite=srv.cfg.overwrite,
                                        rtsp_transport=self.cfg.rtsp_transport,
                                        strict_open=False, reconnect=self.cfg.reconnect,
                                        src=self.cfg.input)
            self.source = self._connect()
            if self.source is None:
                return
            s = self.source
            self.size = s.size or (s.width, s.height)
            srv.warm(self.size)
            if srv.cfg.size == "auto" and not self.options.realtime:
                log.warning("stream %s: size auto is for cameras and paced files (realtime); this "
                            "stream runs at its size", self.name)
            elif srv.cfg.size == "auto":
                from .autosize import AutoSize

                # the engine is shared: each camera gets a frame every 1 / (all cameras' rate)
                self.auto = AutoSize(s, float(s.frame_rate or 25), srv.cfg.min_size,
                                     share=srv.rate_share(self))
                self.auto.calibrate(lambda size: srv.warm(size) or srv.frame_cost(size))
                self.size = self.auto.size
            self.outputs.open(s.width, s.height, s.time_base, s.frame_rate)
            if isinstance(s, live.LiveSource):
                s.fresh()  # frames sent during setup are stale: start from a new connection
            self.state = "running"
            self.writer.start()
            for frame in s:
                if self.stop.is_set():
                    break
                self._enqueue(frame)
        except StreamganError as e:
            self.fail(str(e))
        except Exception as e:  # a bug, or something unforeseen: this stream only
            self.fail(f"{type(e).__name__}: {_first_line(e)}")
        finally:
            self._input_done = True
            with srv.cond:
                srv.cond.notify_all()
            if self.source is not None:
                try:
                    self.source.close()
                except Exception:
                    pass
            if self.writer.ident is None and self.outputs is not None and self.outputs.opened:
                self._close_outputs()  # opened, but no output thread to finalise them

    def _connect(self):
        """Open the input; a camera that is down at start is retried like a dropped one."""
        delay = 0.5
        for attempt in range(self.cfg.reconnect + 1):
            try:
                return live.open_source(self.cfg.input, self.server.translator, self.options,
                                        frames=self.cfg.frames, stop=self.stop)
            except StreamganError as e:
                if attempt >= self.cfg.reconnect:
                    raise
                log.warning("stream %s: %s (retrying in %g s)", self.name, e, delay)
                if self.stop.wait(delay):
                    return None
                delay = min(8.0, delay * 2)

    def _enqueue(self, frame) -> None:
        cond = self.server.cond
        with cond:
            if self.drop == "oldest":
                if len(self.pending) >= self.maxlen:
                    self.pending.popleft()
                    self.dropped += 1
            else:
                while len(self.pending) >= self.maxlen and not self.stop.is_set():
                    cond.wait(0.1)
            self.pending.append(frame)
            self.frames_in += 1
            cond.notify_all()

    def skip_stale(self) -> None:
        """(Engine thread, lock held.) No standing queue: a frame that has waited more than a
        frame interval is dropped if a newer one of this stream waits, so the engine takes the
        newest frame; a burst arriving together is kept."""
        if self.drop != "oldest" or self.source is None:
            return
        max_age = 1.0 / float(self.source.frame_rate or 25)
        now = time.perf_counter()
        while len(self.pending) > 1 and now - self.pending[0].captured > max_age:
            self.pending.popleft()
            self.dropped += 1

    # output thread
    def _write(self) -> None:
        try:
            while True:
                try:
                    item = self.done.get(timeout=0.1)
                except queue.Empty:
                    # done when the input ended (its source, closing, also sets ``stop``) and the
                    # engine holds nothing of this stream: a frame it delivered just before
                    # letting go is still in the queue; at once when the stream failed or the
                    # engine stopped
                    if self.state == "failed" or self.server.stop.is_set() or (
                            self._input_done and not self.pending and
                            self.server.idle_for(self) and self.done.empty()):
                        break
                    continue
                frame, out = item
                self.outputs.write(out, frame.pts)
                now = time.perf_counter()
                self.latency.add(now - frame.captured)
                self.stages.add(frame, now)
                self.server.metrics.observe(self.name, frame, now)
                self.published += 1
                now = time.monotonic()
                self._times.append(now)
                self.last_at = now
                if self.first_at is None:
                    self.first_at = now
        except StreamganError as e:
            self.fail(str(e))
        except Exception as e:
            self.fail(f"{type(e).__name__}: {_first_line(e)}")
        finally:
            self._close_outputs()
            if self.alive:
                self.state = "ended"
            self.stop.set()

    def _close_outputs(self) -> None:
        """Finalise the outputs; a recording that got no frame is removed, not left as an
        empty file."""
        outs = self.outputs
        if outs is None:
            return
        try:
            live.close_outputs(outs, f"stream {self.name}: ")
        except Exception as e:
            log.error("stream %s: %s", self.name, e)

    def deliver(self, frame, out) -> None:
        """From the engine thread. A drop=oldest stream whose outputs lag loses the frame (the
        others are not held up); a drop=block stream makes the engine wait for it, at most 2 s."""
        try:
            if self.drop == "block":
                self.done.put((frame, out), timeout=2.0)
            else:
                self.done.put_nowait((frame, out))
        except queue.Full:
            self.dropped += 1


# -- the server ---------------------------------------------------------------------------------
class Server:
    def __init__(self, cfg: ServeConfig):
        from .translator import Translator

        self.cfg = cfg
        self.translator = Translator(cfg.model, cfg.backend, cfg.precision,
                                     size=None if cfg.size == "auto" else cfg.size,
                                     tile=cfg.tile, batch_size=cfg.batch,
                                     night_exposure=cfg.night_exposure)
        self.batch = cfg.batch or max(self.translator.batch_size, min(8, len(cfg.streams)))
        self.cond = threading.Condition()
        self.streams = [Stream(s, self) for s in cfg.streams]
        self.stop = threading.Event()
        self.engine = threading.Thread(target=self._engine, name="streamgan-engine", daemon=True)
        self.calls = 0
        self.frames = 0
        self.engine_seconds = 0.0
        self._warmed: set = set()
        self._cost: dict = {}  # (processing size, frames) -> seconds a call takes (recent)
        self._warm_lock = threading.Lock()
        self._engine_lock = threading.Lock()  # warm-ups (reader threads) vs the engine thread
        self._inflight: set = set()
        self.http = None  # the metrics endpoint (metrics.MetricsHTTPServer) once started
        self.metrics = ServeMetrics(self)
        self.started = time.monotonic()

    def warm(self, size) -> None:
        """Compile/run the engine once per processing size before its frames arrive, and
        measure a call of one frame and of a full batch there (``affordable``)."""
        with self._warm_lock:
            if size in self._warmed:
                return
            try:
                with self._engine_lock:  # a backend runs one call at a time
                    live.warm_up(self.translator, size)
                    w, h = size
                    for n in sorted({1, self.batch}):
                        self.translator.warm_up(n, w, h)  # compiled for n (warm_up did 1)
                        times = []
                        for _ in range(3):  # the quickest of three: the others' decoding and
                            t0 = time.perf_counter()  # set-up share the cores meanwhile
                            self.translator.warm_up(n, w, h)
                            times.append(time.perf_counter() - t0)
                        self._cost[(size, n)] = min(times)
                    log.debug("engine at %dx%d: %s", w, h, ", ".join(
                        f"{n} frames {1000 * t:.1f} ms" for (sz, n), t in sorted(
                            self._cost.items()) if sz == size))
            except StreamganError:
                raise
            except Exception as e:
                raise ModelError(f"the model cannot run on {size[0]}x{size[1]} frames "
                                 f"({_first_line(e)})") from None
            self._warmed.add(size)

    def rate_share(self, stream) -> float:
        """All running cameras' frame rates (declared; this one's whatever its state) over this one's:
        how many frames the engine takes for each of its frames."""
        def rate(s):
            return float(getattr(s.source, "frame_rate", None) or 25)

        total = sum(rate(s) for s in self.streams if s is stream or (s.alive and s.source is not None))
        return total / rate(stream)

    def frame_cost(self, size) -> float:
        """Seconds a one-frame call at ``size`` takes (measured by ``warm``)."""
        return self._cost[(size, 1)]

    def affordable(self, size, interval: float) -> int:
        """How many frames one call at ``size`` may hold: each frame more may add at most
        ``interval`` (a frame interval) to the call's time (times measured; between the sizes
        measured, linear)."""
        known = sorted((n, t) for (sz, n), t in list(self._cost.items()) if sz == size)  # readers warm meanwhile
        if not known:
            return 1

        def cost(n):
            lo = max((k for k in known if k[0] <= n), default=known[0])
            hi = min((k for k in known if k[0] >= n), default=known[-1])
            if hi[0] == lo[0]:
                return lo[1] * n / lo[0]
            return lo[1] + (hi[1] - lo[1]) * (n - lo[0]) / (hi[0] - lo[0])

        n = 1
        while n < self.batch and cost(n + 1) - cost(n) <= interval:
            n += 1
        return n

    def idle_for(self, stream: Stream) -> bool:
        with self.cond:
            return stream not in self._inflight

    # engine thread
    def _gather(self) -> list:
        """Frames from the streams in turn, until ``batch`` or ``max_wait`` after the first."""
        batch: list = []
        deadline = None
        order = list(self.streams)
        start = self.calls % max(1, len(order))
        order = order[start:] + order[:start]  # rotate so no stream always goes first
        limit = self.batch
        with self.cond:
            while not self.stop.is_set():
                took = True
                while len(batch) < limit and took:
                    took = False
                    for s in order:
                        if s.pending and len(batch) < limit:
                            s.skip_stale()
                            batch.append((s, s.pending.popleft()))
                            self._inflight.add(s)
                            took = True
                            if len(batch) == 1:  # what more frames may cost, for this size
                                limit = min(self.batch, self.affordable(
                                    s.size, 1.0 / float(getattr(s.source, "frame_rate", None)
                                                        or 25)))
                if batch:
                    self.cond.notify_all()  # room for readers that block
                if len(batch) >= limit:
                    break
                now = time.monotonic()
                if batch:
                    deadline = deadline or now + self.cfg.max_wait
                    if now >= deadline:
                        break
                    self.cond.wait(deadline - now)
                else:
                    if not any(s.alive for s in self.streams):
                        break
                    self.cond.wait(0.1)
        return batch

    def _engine(self) -> None:
        while not self.stop.is_set():
            batch = self._gather()
            if not batch:
                if not any(s.alive for s in self.streams):
                    return
                continue
            groups: dict = {}
            for s, f in batch:
                groups.setdefault(f.image.shape, []).append((s, f))
            for items in groups.values():
                t0 = time.perf_counter()
                try:
                    with self._engine_lock:
                        # a temporal model: each frame with its own camera's state
                        outs = self.translator.run_batch(stack([f for _, f in items]),
                                                         [s for s, _ in items],
                                                         [f.time for _, f in items])
                    t1 = time.perf_counter()
                except Exception as e:
                    for s, _ in items:
                        s.engine_errors += 1
                        if s.engine_errors >= 3:
                            s.fail(f"the model failed on its frames ({_first_line(e)})")
                    log.error("engine call failed for %s: %s",
                              ", ".join(sorted({s.name for s, _ in items})), _first_line(e))
                    continue
                self.engine_seconds += t1 - t0
                self.calls += 1
                self.frames += len(items)
                h, w = items[0][1].image.shape[:2]
                key = ((w, h), len(items))
                self._cost[key] = 0.8 * self._cost.get(key, t1 - t0) + 0.2 * (t1 - t0)
                for s in {s for s, _ in items if s.auto is not None}:  # size auto: judge the call
                    s.auto.share = self.rate_share(s)  # cameras come and go
                    s.auto.arrived([(f.captured, f.index) for t, f in items if t is s])
                    s.auto.observe(t1 - t0, len(items))
                    s.size = s.auto.size
                for _, f in items:  # when its engine call began and ended (latency by stage)
                    f.started, f.finished = t0, t1
                for (s, f), out in zip(items, outs):
                    if s.alive:
                        s.deliver(f, out)
            with self.cond:
                self._inflight.clear()

    # metrics
    def metrics_text(self) -> str:
        """What ``/metrics`` answers (Prometheus text format)."""
        return self.metrics.text().decode()

    def start_metrics(self) -> None:
        m = self.cfg.metrics
        if m is None or self.http is not None:
            return
        self.http = serve_metrics(self.metrics, m.host, m.port)
        self.metrics_port = self.http.server_address[1]

    # lifecycle
    def run(self, duration: float | None = None) -> None:
        self.start_metrics()
        for s in self.streams:
            s.reader.start()
        self.engine.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while any(s.alive for s in self.streams) or any(
                    s.writer.is_alive() for s in self.streams):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            self.shutdown()

    def shutdown(self, timeout: float = 15.0) -> None:
        for s in self.streams:
            s.stop.set()
            if s.source is not None and hasattr(s.source, "stop"):
                s.source.stop.set()
        with self.cond:
            self.cond.notify_all()
        end = time.monotonic() + timeout
        for s in self.streams:
            for t in (s.reader, s.writer):
                if t.is_alive():
                    t.join(max(0.0, end - time.monotonic()))
        self.stop.set()
        with self.cond:
            self.cond.notify_all()
        if self.engine.is_alive():
            self.engine.join(max(0.0, end - time.monotonic()))
        for s in self.streams:
            if s.state in ("starting", "running"):
                s.state = "ended"
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()

    def summary(self) -> list[str]:
        out = []
        for s in self.streams:
            head = (f"{s.name}: {s.state}; {s.published} frames, {s.dropped} dropped, "
                    f"{s.latency.summary()}" + (f"; {s.stages.summary()}"
                                                if s.stages.summary() else ""))
            out.append(head + (f"; error: {s.error}" if s.error else ""))
            if s.auto is not None:
                out += [f"  {line}" for line in s.auto.lines()]
            if s.outputs:
                for name, n, err in s.outputs.report():
                    out.append(f"  {name}: {n} frames" + (f" (FAILED: {err})" if err else ""))
        if self.calls:
            out.append(f"engine: {self.calls} calls, {self.frames / self.calls:.2f} frames per "
                       f"call, {1000 * self.engine_seconds / self.calls:.1f} ms per call")
        return out


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return redact(text[0] if text else type(e).__name__)[:300]


def cli_run(args) -> int:
    from . import errors

    cfg = load_config(args.config)
    if getattr(args, "check", False):
        missing = sorted({f"{s.name}: {Path(o).parent}" for s in cfg.streams for o in s.outputs
                          if "://" not in o and not Path(o).parent.is_dir()})
        if missing:  # the run would fail each of these streams
            raise OutputError(f"{args.config}: output folder does not exist for " + "; ".join(missing))
        print(f"{args.config}: ok ({len(cfg.streams)} streams)")
        return errors.EXIT_OK
    server = Server(cfg)
    if not args.quiet:
        print(f"streamgan serve: {server.translator.describe()}; {len(cfg.streams)} streams, "
              f"batch {server.batch} across streams, max wait {1000 * cfg.max_wait:g} ms",
              file=sys.stderr)
    server.start_metrics()
    if server.http is not None and not args.quiet:
        print(f"streamgan serve: metrics on http://{server.http.server_address[0]}:"
              f"{server.metrics_port}/metrics", file=sys.stderr, flush=True)
    # Ctrl-C, SIGTERM and SIGHUP (KeyboardInterrupt, see cli.stop_signals) stop every stream
    # the normal way: recordings finalised, segments closed
    server.run(duration=args.duration)
    for line in server.summary():
        print(f"streamgan serve: {line}", file=sys.stderr)
    if all(s.state == "failed" for s in server.streams):
        raise InputError("every stream failed: " + "; ".join(
            f"{s.name}: {s.error}" for s in server.streams))
    return errors.EXIT_OK
