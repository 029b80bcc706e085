"""The Prometheus endpoint of ``streamgan serve``, through the ``prometheus-client`` library.

``ServeMetrics`` keeps latency histograms (observed as frames are published: capture to publish,
and by stage: waiting for the engine, the model, encode + publish) and reads the counters and
gauges from the server's state at each scrape. ``serve_metrics`` answers ``/metrics`` on its own
bounded budget (``MetricsHTTPServer``), so that idle or slow clients can never take the
descriptors or threads the streams need. The endpoint listens on 127.0.0.1 unless configured.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .errors import UsageError
from .live import Stages

log = logging.getLogger("streamgan")

# the endpoint's own budget: at most this many connections at once (more are closed at once),
# each closed after this many seconds, so it never takes descriptors from the streams
METRICS_MAX_CONNECTIONS = 16
METRICS_TIMEOUT = 5.0
# seconds: around a frame interval (33 ms at 30 fps) finely, then coarser up to a stall
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.033, 0.05, 0.066, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
                   5.0)
STAGES = ("total", "wait", "model", "output")


class ServeMetrics:
    """The metrics of one ``serve`` process (its own registry, so several servers in one
    process, as in tests, never share series)."""

    def __init__(self, server):
        self.server = server
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "streamgan_latency_seconds", "per frame: capture to publish (stage total), waiting "
            "for the engine (wait), the model's call (model), encode and publish (output), and wait "
            "plus output (beyond: the latency beyond the frame's own engine call)",
            ["stream", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_State(server))

    def observe(self, stream: str, frame, published: float) -> None:
        """A frame of ``stream`` was published at ``published`` (perf_counter)."""
        self.latency.labels(stream, "total").observe(published - frame.captured)
        times = Stages.split(frame, published)
        if times is not None:
            for stage, seconds in zip(Stages.NAMES, times):
                self.latency.labels(stream, stage).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _State:
    """Counters and gauges read from the server at each scrape."""

    def __init__(self, server):
        self.server = server

    def describe(self):
        return []  # read at scrape time: nothing to check at registration

    def collect(self):
        srv, streams = self.server, self.server.streams

        def family(kind, name, doc, labels=()):
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            return cls(f"streamgan_{name}", doc, labels=list(labels))

        up = family("gauge", "stream_up", "1 while frames flow, 0 while starting, ended or "
                    "failed", ("stream", "state"))
        for s in streams:
            up.add_metric([s.name, s.state], int(s.state == "running"))
        yield up
        for name, doc, get in (
                ("frames_in", "frames read from the input", lambda s: s.frames_in),
                ("frames", "frames translated and written to the outputs", lambda s: s.published),
                ("dropped_frames", "frames dropped because translation fell behind (the newest "
                 "frame is translated, the others dropped)", lambda s: s.dropped),
                ("reconnects", "input reconnections", lambda s: _stat(s, "reconnects")),
                ("stalls", "times the input stalled", lambda s: _stat(s, "stalls")),
                ("bad_packets", "input packets the decoder rejected",
                 lambda s: _stat(s, "bad_packets"))):
            f = family("counter", name, doc, ("stream",))
            for s in streams:
                f.add_metric([s.name], get(s))
            yield f
        sized = [s for s in streams if getattr(s, "auto", None) is not None]
        if sized:  # size auto (streamgan.autosize)
            side = family("gauge", "model_short_side", "the short side the model runs at for the "
                          "stream (size auto: lowered while the engine cannot keep up)", ("stream",))
            changes = family("counter", "size_changes", "times size auto changed the stream's "
                             "model size", ("stream",))
            for s in sized:
                side.add_metric([s.name], s.auto.short)
                changes.add_metric([s.name], len(s.auto.changes))
            yield side
            yield changes
        fps = family("gauge", "fps", "published frames per second over the last 5 s",
                     ("stream",))
        q = family("gauge", "latency_quantile_seconds", "capture to publish latency over the "
                   "last hour of frames, by stage, at quantile 0.5, 0.95 and 1 (the maximum)",
                   ("stream", "stage", "quantile"))
        for s in streams:
            fps.add_metric([s.name], s.fps)
            for stage, lat in (("total", s.latency), *((n, getattr(s.stages, n))
                                                        for n in Stages.NAMES)):
                if lat.count:
                    q.add_metric([s.name, stage, "0.5"], lat.p50)
                    q.add_metric([s.name, stage, "0.95"], lat.p95)
                    q.add_metric([s.name, stage, "1"], lat.max)
        yield fps
        yield q
        outs = [(s, o) for s in streams if s.outputs for o in s.outputs.outputs]
        f = family("counter", "output_frames", "frames written to each output",
                   ("stream", "output"))
        g = family("gauge", "output_failed", "1 for an output that failed and was dropped",
                   ("stream", "output"))
        r = family("counter", "output_reconnects", "publish reconnections", ("stream", "output"))
        for s, o in outs:
            f.add_metric([s.name, o.name], o.frames)
            g.add_metric([s.name, o.name], int(o.failed))
            if o.kind == "publish":
                r.add_metric([s.name, o.name], getattr(o, "reconnects", 0))
        yield from (f, g, r)
        for name, doc, v in (("engine_calls", "engine calls (one batch each)", srv.calls),
                             ("engine_frames", "frames through the engine, all streams",
                              srv.frames),
                             ("engine_seconds", "time spent in the engine", srv.engine_seconds)):
            c = family("counter", name, doc)
            c.add_metric([], v)
            yield c


def _stat(stream, name: str) -> int:
    return getattr(getattr(stream.source, "stats", None), name, 0) if stream.source else 0


class MetricsHTTPServer(ThreadingHTTPServer):
    """The ``/metrics`` endpoint on its own bounded budget, so that it can never take the
    descriptors (or threads) the streams need: at most ``METRICS_MAX_CONNECTIONS`` connections
    at once (one more is closed as soon as it is accepted) and each closed
    ``METRICS_TIMEOUT`` seconds after it was accepted, answered or not."""

    daemon_threads = True
    request_queue_size = 64  # connections beyond the cap are accepted (and closed) quickly

    def __init__(self, address, handler):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._open: dict = {}  # connection -> when it must be closed (monotonic)
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._lock:
            full = len(self._open) >= METRICS_MAX_CONNECTIONS
            if not full:
                self._open[request] = time.monotonic() + METRICS_TIMEOUT
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)  # a thread for this connection

    def shutdown_request(self, request):
        with self._lock:  # never under the reaper below
            self._open.pop(request, None)
            super().shutdown_request(request)

    def service_actions(self):
        """(The accepting thread, at least every half second.) Cut connections past their
        time: the thread serving one then sees the end of it and closes it."""
        now = time.monotonic()
        with self._lock:
            for conn, deadline in self._open.items():
                if now >= deadline:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def server_close(self):
        super().server_close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        """A client that went away mid-answer: no traceback on stderr (one with --debug)."""
        log.debug("metrics: a request from %s failed", client_address[0], exc_info=True)



def serve_metrics(metrics: ServeMetrics, host: str, port: int) -> MetricsHTTPServer:
    """Answer ``/metrics`` on ``host:port`` from a thread of its own; a port in use is a
    ``UsageError`` naming it."""

    class Handler(BaseHTTPRequestHandler):
        timeout = METRICS_TIMEOUT  # seconds per read or write on the connection

        def do_GET(self):
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = metrics.text()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):  # no access log on stderr
            pass

    host = "127.0.0.1" if host == "localhost" else host
    try:
        http = MetricsHTTPServer((host, port), Handler)
    except OSError as e:
        raise UsageError(f"metrics: cannot listen on {host}:{port} ({e.strerror})") from None
    threading.Thread(target=http.serve_forever, name="streamgan-metrics", daemon=True).start()
    return http
