"""The batch's jobs as Ray tasks (``--cluster``; ``pip install 'streamgan[cluster]'``).

Each file is one Ray task running ``jobs.run_job``, the code a local worker runs, the way Ray's
batch-inference examples map a function over inputs: Ray places the tasks where their resources
are free (CPU threads, or a fraction of a GPU so several files share one), retries a task whose
worker process or node died (``max_retries``; an error in the file itself is an outcome, not
retried), and reuses worker processes, so each keeps its loaded model for the next file. Frame
counts come back through a small actor, whose reply also carries a stop request; the driver
writes the ledger. Inputs and
the output folder must be at the same path on every node (a shared file system); outputs are
written to a temp file named with the node and moved into place when complete.

This module imports ray; ``batch.py`` imports it only when a cluster is asked for.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
from typing import Callable

from .errors import ClusterError, UsageError

try:
    import ray
except ImportError:  # pragma: no cover - exercised by the tests with ray hidden
    ray = None

from . import io, jobs
from .jobs import Job, Settings

log = logging.getLogger("streamgan")

MAX_RETRIES = 3  # a task whose worker dies is run again this many times
CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before saying it cannot be reached
STOP_WAIT = 60.0  # seconds running tasks get to stop at their next frame
ACTOR_TIMEOUT = 30.0  # seconds for a call to the batch's control actor


def _reachable(address: str) -> None:
    """host:port (or ray://host:port) answers a TCP connection within ``CONNECT_TIMEOUT``."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--cluster {address}: give ray, auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise ClusterError(f"Ray cluster at {address} cannot be reached "
                           f"({e.strerror or e}); is the head running (ray start --head)?") \
            from None


def connect(cluster: str) -> "RayRunner":
    """"ray": start Ray on this machine; "auto": join the cluster this machine belongs to
    (RAY_ADDRESS or the one ``ray start`` made); "ray://HOST:PORT" (Ray Client) or
    "HOST:PORT" (the head's GCS address): join that one."""
    if ray is None:
        raise ClusterError("--cluster needs Ray, which is not installed: "
                           "pip install 'streamgan[cluster]'")
    kwargs = {"logging_level": logging.WARNING, "log_to_driver": False}
    if cluster == "ray":
        address = "local"
        kwargs["include_dashboard"] = False
    elif cluster == "auto":
        address = "auto"
        if os.environ.get("RAY_ADDRESS"):
            _reachable(os.environ["RAY_ADDRESS"])
    else:
        _reachable(cluster)
        address = cluster
    # ray.init installs its own SIGTERM handler (it ends the driver at once); the batch's own
    # (the command line's: stop the tasks, keep the ledger) is put back
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        text = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise ClusterError(f"cannot join the Ray cluster ({cluster}): {text}") from None
    finally:
        for s, h in handlers.items():
            if h is not None and threading.current_thread() is threading.main_thread():
                signal.signal(s, h)
    return RayRunner(cluster)


@ray.remote(num_cpus=0) if ray else (lambda c: c)
class _Control:
    """The driver's end of a batch: tasks report their events (start, frames) here, and the
    reply says whether the driver asked them to stop."""

    def __init__(self):
        self.events: list = []
        self.stopping = False

    def report(self, event: tuple) -> bool:
        self.events.append(event)
        return self.stopping

    def take(self) -> list:
        events, self.events = self.events, []
        return events

    def stop(self) -> None:
        self.stopping = True


@ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False) if ray else (lambda f: f)
def _translate_file(job: Job, settings: Settings, control) -> dict:
    io.name_temps_by_host()  # the output folder is shared with other nodes
    jobs.set_stop(False)  # Ray reuses worker processes: a stop of an earlier batch is over

    def send(event: tuple) -> None:
        if ray.get(control.report.remote(event), timeout=ACTOR_TIMEOUT):
            jobs.set_stop(True)  # the file stops at its next frame

    return jobs.run_job(job, settings, send)


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # Ray colours its messages
    return text.splitlines()[0] if text else type(e).__name__


class RayRunner:
    def __init__(self, cluster: str):
        self.cluster = cluster
        self.gpus = ray.cluster_resources().get("GPU", 0)
        self.resources: dict = {}

    def plan(self, backend: str, threads: int, per_gpu: int) -> str:
        """Set what each task asks Ray for; returns one line saying what runs where."""
        gpu = backend in ("tensorrt", "torch") or (backend == "auto" and self.gpus > 0)
        if gpu:
            self.resources = {"num_cpus": 1, "num_gpus": 1 / per_gpu}
            what = f"{per_gpu} file(s) per GPU"
        else:
            self.resources = {"num_cpus": threads}
            what = f"{threads} CPU thread(s) per file"
        cpus = int(ray.cluster_resources().get("CPU", 0))
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        return (f"Ray ({self.cluster}): {nodes} node(s), {cpus} CPUs, {int(self.gpus)} GPUs; "
                f"{what}")

    def run(self, todo: list[Job], settings: Settings, on_event: Callable[[tuple], None],
            on_result: Callable[[Job, dict], None]) -> None:
        control = _Control.remote()
        task = _translate_file.options(**self.resources)
        refs = {task.remote(j, settings, control): j for j in todo}
        started: set[int] = set()

        def drain():
            for ev in ray.get(control.take.remote(), timeout=ACTOR_TIMEOUT):
                if ev[0] == "start":
                    started.add(ev[1])
                on_event(ev)

        def collect(ready):
            drain()
            for ref in ready:
                job = refs.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    rec = {"status": "stopped", "error": "stopped before it started"}
                except ray.exceptions.RayTaskError as e:  # raised outside run_job's guard
                    cause = e.cause if e.cause is not None else e
                    rec = {"status": "failed", "exit_code": 1,
                           "error": f"the Ray task raised {type(cause).__name__}: "
                                    f"{_first_line(cause)}"}
                except ray.exceptions.RayError as e:  # retries used up (worker or node died)
                    rec = {"status": "failed", "exit_code": 1,
                           "error": f"the Ray task's worker died {MAX_RETRIES + 1} times "
                                    f"({type(e).__name__}: {_first_line(e)})"}
                on_result(job, rec)

        def wait(seconds: float | None = None):
            """Collect results until none are left (or ``seconds`` passed); the waiting is in
            Python, not in ray.wait, so a stop signal arrives as itself."""
            deadline = None if seconds is None else time.monotonic() + seconds
            while refs and (deadline is None or time.monotonic() < deadline):
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
                collect(ready)
                if refs:
                    time.sleep(0.2)

        try:
            wait()
        except KeyboardInterrupt:
            # running tasks learn it at their next report and stop at the next frame, the way
            # a local worker does (partial output discarded); the ones not started are
            # cancelled, so they never run
            ray.get(control.stop.remote(), timeout=ACTOR_TIMEOUT)
            drain()
            for ref, job in refs.items():
                if job.index not in started:
                    ray.cancel(ref)
            wait(STOP_WAIT)
            raise
        finally:
            try:
                ray.kill(control)
            except Exception:
                pass

    def close(self) -> None:
        ray.shutdown()
