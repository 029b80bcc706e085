"""One file of a batch, as a worker runs it: the same code in a local worker process and in a
Ray task (``batch.py`` plans and drives, ``cluster.py`` hands jobs to Ray).

A worker builds its ``Translator`` once and keeps it for every file it is given with the same
settings. ``run_job`` never raises for a bad file: the outcome (frames, seconds, bad frames, or
the error's one line and exit code) comes back as a ``dict`` the driver writes to the ledger.
A stop request (the driver's stop event, SIGTERM) ends the file at the next frame and discards
its partial output, so a rerun does the file again and nothing half-written is left in place.
A local worker dies with its driver, however the driver ends (``kill -9`` included): nothing
would record the files it went on with.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from . import errors
from .card import sha256_file
from .errors import Interrupted, StreamganError
from .io import EncodeOptions, redact
from .pipeline import Progress

REPORT_EVERY = 0.5  # seconds between frame-count reports to the driver


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to translate any file of the batch the same way."""

    task: str
    backend: str = "auto"
    precision: str = "auto"
    size: int | None = None
    tile: int | None = None
    batch_size: int | None = None
    hwaccel: str = "auto"
    threads: int | None = None  # backend CPU threads per file (None: the backend's default)
    night_exposure: str | None = None  # a day-to-night plugin's exposure (None: its card's default)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    overwrite: bool = False
    start: float = 0.0
    duration: float | None = None
    frames: int | None = None
    compare: bool = False
    cli_wording: bool = False  # messages name options as the command line spells them

    def fingerprint(self) -> dict:
        """What shapes the output (recorded in the ledger: other settings redo the file), the model's
        weights included: a plugin folder given new weights under the same name redoes the batch."""
        from .plugins import load

        d = asdict(self)
        for k in ("threads", "overwrite", "hwaccel", "batch_size", "cli_wording"):
            d.pop(k)
        model = load(self.task, self.night_exposure)
        card = model.card  # its sha256 values were checked against the files by load()
        d["weights"] = [model.sha256 or sha256_file(model.onnx)] + (
            [card.int8.sha256, card.int8.weights_sha256] if model.int8 else [])
        d["night_exposure"] = model.exposure  # the default named: a new default redoes the batch
        return d


@dataclass(frozen=True)
class Job:
    index: int
    input: str  # absolute path
    output: str  # absolute path
    replace: bool = False  # the output is this batch's own, from an input that changed since


class _Stop:
    """Whether this worker was asked to stop: the driver's event, SIGTERM to the worker, or the
    driver gone (a local worker's parent process)."""

    event = None  # a multiprocessing Event (local workers) or None
    signalled = False
    driver: int | None = None  # a local worker's parent: the batch's driver

    @classmethod
    def orphaned(cls) -> bool:
        return cls.driver is not None and os.getppid() != cls.driver

    @classmethod
    def requested(cls) -> bool:
        return cls.signalled or (cls.event is not None and cls.event.is_set()) or cls.orphaned()


class _Reporter(Progress):
    """Counts frames written and sends them to the driver every ``REPORT_EVERY`` seconds; a stop
    request raises ``KeyboardInterrupt`` here, inside ``translate_video``'s loop, which stops
    the file the way Ctrl-C stops a single-file run."""

    def __init__(self, job: Job, send: Callable[[tuple], None]):
        super().__init__(None, enabled=False)
        self.job, self.send = job, send
        self.sent = 0
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        super().update(n)
        if _Stop.requested():
            raise KeyboardInterrupt("stop requested")
        if time.monotonic() - self.last >= REPORT_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.n > self.sent:
            self.send(("frames", self.job.index, self.n - self.sent))
            self.sent = self.n
        self.last = time.monotonic()


def set_stop(flag: bool) -> None:
    """Ask this worker's current file to stop at its next frame (or clear the request)."""
    _Stop.signalled = flag


_cached: tuple | None = None  # (settings, Translator): the model is loaded once per worker


def translator(settings: Settings):
    global _cached
    if _cached is None or _cached[0] != settings:
        from .translator import Translator

        _cached = None
        tr = Translator(settings.task, settings.backend, settings.precision, size=settings.size,
                        tile=settings.tile, batch_size=settings.batch_size,
                        hwaccel=settings.hwaccel, threads=settings.threads,
                        night_exposure=settings.night_exposure)
        _cached = (settings, tr)
    return _cached[1]


def run_job(job: Job, settings: Settings, send: Callable[[tuple], None]) -> dict:
    """Translate one file; returns its outcome (never raises for a bad file or a stop)."""
    t0 = time.perf_counter()
    out = {"index": job.index, "status": "failed", "frames": 0, "seconds": 0.0, "fps": 0.0,
           "bad_frames": 0, "error": None, "exit_code": None, "pid": os.getpid()}
    send(("start", job.index, os.getpid()))  # the reply may carry a stop request
    if _Stop.requested():
        out.update(status="stopped", error="stopped before it started")
        return out
    bar = _Reporter(job, send)
    wording = errors.cli_wording() if settings.cli_wording else contextlib.nullcontext()
    try:
        with wording:
            tr = translator(settings)
            res = tr.translate_video(job.input, job.output,
                                     overwrite=settings.overwrite or job.replace,
                                     encode=settings.encode, start=settings.start,
                                     duration=settings.duration, frames=settings.frames,
                                     compare=settings.compare, progress=bar,
                                     discard_partial=True)
        out.update(status="done", frames=res.frames, bad_frames=res.bad_frames)
    except Interrupted as e:
        out.update(status="stopped", error=str(e), exit_code=e.exit_code)
    except KeyboardInterrupt:  # a stop before the first frame (model loading, opening)
        out.update(status="stopped", error="stopped")
    except StreamganError as e:
        out.update(error=redact(str(e)), exit_code=e.exit_code)
    except Exception as e:  # a bug, or a library failing on this file: recorded, batch goes on
        out.update(error=redact(f"internal error: {type(e).__name__}: {e}"), exit_code=1)
    bar.flush()
    out["seconds"] = round(time.perf_counter() - t0, 3)
    if out["frames"] and out["seconds"] > 0:
        out["fps"] = round(out["frames"] / out["seconds"], 2)
    if out["status"] == "done":
        out["output_bytes"] = Path(job.output).stat().st_size
    return out


# -- local worker processes (batch.py's pool) -----------------------------------------------------
_events = None  # multiprocessing Queue to the driver


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(driver: int) -> None:
    """End this worker when its driver ends, however it ends: Linux kills it with SIGKILL
    (PR_SET_PDEATHSIG; its temp file is removed by the next run into that folder, see
    ``io.clean_stale_temps``). Elsewhere, and should that fail, the worker sees between frames
    that its parent changed and stops the file (``_Stop``), then exits (``run_local_job``)."""
    import ctypes
    import signal

    _Stop.driver = driver
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):  # not Linux
        pass
    if _Stop.orphaned():  # the driver died before the line above
        os._exit(1)


def init_local_worker(stop_event, events, gpus: list[str] | None, counter,
                      driver: int) -> None:
    """Runs once in each worker process: Ctrl-C is the driver's to handle (it sets the stop
    event); SIGTERM sent to the worker itself (systemd stops the whole group) stops it too; the
    worker dies with its ``driver`` (pid). With GPUs, each worker gets one, round robin."""
    import signal

    global _events
    _die_with(driver)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_term(signum, frame):
        _Stop.signalled = True

    signal.signal(signal.SIGTERM, on_term)
    _Stop.event, _events = stop_event, events
    if gpus:
        with counter.get_lock():
            slot = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]


def run_local_job(job: Job, settings: Settings) -> dict:
    out = run_job(job, settings, _events.put)
    if _Stop.orphaned():  # no driver to take the outcome or give the next file
        os._exit(1)
    return out
