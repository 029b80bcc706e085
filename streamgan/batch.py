"""Many videos in one run: ``streamgan derain A.mp4 DIR/ 'clips/**/*.mp4' --out-dir OUT/`` and
``streamgan.translate_many``.

The driver (this module) finds the inputs, plans one output per input under ``OUT/`` (the input's
path relative to the folder or pattern it was found through, named as the single-file form names
it), skips what the ledger says is done, and hands the rest to workers: local worker processes
(``--jobs N``, the default) or Ray tasks (``cluster=``, ``cluster.py``). Workers run
``jobs.run_job``: one model load per worker, one file at a time, the output written to a temp file
and moved into place only when complete. The driver alone writes the ledger
(``OUT/streamgan-ledger.jsonl``, one JSON line per file handed to the workers and one per
outcome, appended and synced), holds ``OUT/streamgan-batch.lock`` for the whole run (one batch per
output folder), draws the one progress bar, and on Ctrl-C / SIGTERM asks the workers to stop,
waits for them (bounded), records what finished and raises ``Interrupted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import json
import logging
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import errors, locks
from .errors import InputError, Interrupted, OutputError, UsageError
from .io import VIDEO_EXTS, EncodeOptions, redact
from .jobs import Job, Settings

log = logging.getLogger("streamgan")

LEDGER = "streamgan-ledger.jsonl"
LOCK = "streamgan-batch.lock"
STOP_WAIT = 60.0  # seconds the workers get to stop at their next frame after Ctrl-C / SIGTERM
_MAGIC = set("*?[")


# -- inputs and outputs ---------------------------------------------------------------------------
@dataclass
class Planned:
    input: Path
    output: Path
    error: str | None = None  # a named file that is missing: recorded as failed, batch goes on


def _videos_in(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTS]
    return found


def _pattern_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    keep = []
    for p in parts:
        if _MAGIC & set(p):
            break
        keep.append(p)
    return Path(*keep) if keep else Path(".")


def find_inputs(inputs: list, out_dir: Path) -> list[tuple[Path, Path]]:
    """(file, the folder its output path is relative to) for every input: files as given,
    folders searched (recursively) for videos, glob patterns (``**`` recursive) expanded.
    An output folder inside a searched folder is refused (its outputs would be inputs next
    time)."""
    out = Path(out_dir).resolve()
    found: list[tuple[Path, Path]] = []
    for item in map(str, inputs):
        if "://" in item:
            raise UsageError(f"{redact(item)}: a batch takes video files, folders and patterns; "
                             "translate a stream on its own (without --out-dir)")
        p = Path(item)
        if p.is_dir():
            _refuse_inside(out, p, recursive=True)
            found += [(f, p) for f in _videos_in(p)]
        elif _MAGIC & set(item) and not p.exists():
            base = _pattern_base(item)
            _refuse_inside(out, base, recursive="**" in item)
            found += [(Path(f), base) for f in sorted(glob.glob(item, recursive=True))
                      if Path(f).is_file() and not Path(f).name.startswith(".")]
        else:
            found.append((p, p.parent))
    return found


def _refuse_inside(out: Path, folder: Path, recursive: bool) -> None:
    folder = folder.resolve()
    if out == folder or (recursive and folder in out.parents):
        raise OutputError(f"the output folder {out} is inside the input folder {folder}: its "
                          "outputs would be read as inputs next time; choose a folder outside it")


def plan(inputs: list, task: str, out_dir) -> list[Planned]:
    out_dir = Path(out_dir)
    found = find_inputs(inputs, out_dir)
    if not found:
        raise InputError("no video found in " + ", ".join(map(str, inputs))
                         + f" (folders are searched for {' '.join(VIDEO_EXTS)})")
    name = Path(task).stem
    planned, seen, by_output = [], set(), {}
    for f, base in found:
        key = os.path.abspath(f)
        if key in seen:
            continue
        seen.add(key)
        rel = Path(os.path.relpath(f, base))
        dst = (out_dir / rel.parent / f"{rel.stem}.{name}.mp4").resolve()
        if dst in by_output:
            raise UsageError(f"{by_output[dst]} and {f} would both be written to {dst}; give "
                             "them in separate runs or from one folder")
        by_output[dst] = f
        error = None
        if not f.is_file():
            error = f"{f}: no such file" if not f.exists() else f"{f}: not a file"
        planned.append(Planned(Path(key), dst, error))
    return planned


# -- the output folder: its lock and its ledger ---------------------------------------------------
def _open_plain(path: Path, flags: int, what: str) -> int:
    """Open ``path``, which must be a plain file, never through a symbolic link (its target
    could be any file the user can write)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputError(f"{path} is a symbolic link; {what} must be a plain file in the "
                              "output folder (remove the link)") from None
        if e.errno == errno.EISDIR:
            raise OutputError(f"{path} is a folder; {what} must be a plain file (move the "
                              "folder away)") from None
        raise OutputError(f"{path}: cannot open {what} ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"{path} is not a plain file; {what} must be one (move it away)")
    return fd


@contextlib.contextmanager
def out_dir_lock(out_dir: Path):
    """Hold ``OUT/streamgan-batch.lock`` (flock) while a batch writes ``out_dir``: a second batch
    on the same folder stops at once, naming the first one's pid and host, instead of writing
    beside it. The lock goes with the process, however it ends (kill -9 included)."""
    fd = _open_plain(out_dir / LOCK, os.O_RDWR | os.O_CREAT, "the batch's lock file")

    def busy(holder: str) -> OutputError:
        return OutputError(f"{out_dir} is being written by another batch ({holder}); wait for it "
                           f"to end, or give another {errors.flag('--out-dir', 'out_dir')}")

    def unsupported(e: OSError) -> None:
        log.warning("%s: cannot lock the output folder (%s); run one batch at a time into it",
                    out_dir, e.strerror or e)

    with locks.hold(fd, busy, unsupported):
        yield


class Ledger:
    """``OUT/streamgan-ledger.jsonl``: one line per file handed to the workers (``queued``) and
    one per outcome, appended and synced, so a stopped or killed batch leaves every finished
    file recorded (a torn last line is ignored). Opened once, never through a symbolic link."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LEDGER
        self._fd = _open_plain(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND,
                               "the batch ledger")

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)

    def load(self) -> dict[str, dict]:
        """Input path -> its latest record."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        with open(self._fd, "rb", closefd=False) as f:
            text = f.read().decode(errors="replace")
        if text and not text.endswith("\n"):  # a driver killed mid-line: end the torn line
            self._write("\n")
        last: dict[str, dict] = {}
        for line in text.splitlines():
            try:
                rec = json.loads(line)
                last[rec["input"]] = rec
            except (ValueError, KeyError, TypeError):
                continue
        return last

    def append(self, *recs: dict) -> None:
        self._write("".join(json.dumps(rec, sort_keys=False) + "\n" for rec in recs))

    def _write(self, text: str) -> None:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)


def _identity(path: Path) -> dict:
    try:
        st = path.stat()
    except OSError:
        return {"input_bytes": None, "input_mtime_ns": None}
    return {"input_bytes": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def _recorded_output(rec: dict | None, p: Planned) -> bool:
    """The file at the output path is the one this batch recorded as done (same size)."""
    try:
        return bool(rec) and rec.get("status") == "done" and \
            p.output.stat().st_size == rec.get("output_bytes")
    except OSError:
        return False


def _own_output(rec: dict | None, p: Planned) -> bool:
    """The file at the output path is this batch's: recorded as done, or the file was queued
    with its output path free (or holding this batch's own output) and the driver was killed
    before it learned the outcome (the latest record is still ``queued``). Outputs are moved
    into place only when complete, and the folder's lock keeps other batches out, so a file
    there now is what this batch's worker published."""
    if rec and rec.get("status") == "queued" and rec.get("claimed"):
        try:
            return stat.S_ISREG(os.lstat(p.output).st_mode)
        except OSError:
            return False
    return _recorded_output(rec, p)


def _is_done(rec: dict | None, p: Planned, settings: dict) -> bool:
    """Done before with this very input and these settings, and the output is still the one
    that run wrote (present, same size)."""
    ident = _identity(p.input)
    return _recorded_output(rec, p) and rec.get("settings") == settings and (
        rec.get("input_bytes"), rec.get("input_mtime_ns")) == (ident["input_bytes"],
                                                              ident["input_mtime_ns"])


# -- the report -----------------------------------------------------------------------------------
@dataclass
class FileReport:
    input: Path
    output: Path
    status: str  # done | skipped | failed | stopped | not started
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    bad_frames: int = 0
    error: str | None = None
    exit_code: int | None = None


@dataclass
class BatchReport:
    """What ``translate_many`` did, file by file."""

    files: list[FileReport]
    seconds: float
    ledger: Path
    workers: str = ""
    startup_seconds: float = 0.0  # cluster connection (Ray start-up), before the first job

    def _with(self, status: str) -> list[FileReport]:
        return [f for f in self.files if f.status == status]

    done = property(lambda self: self._with("done"))
    skipped = property(lambda self: self._with("skipped"))
    failed = property(lambda self: self._with("failed"))

    @property
    def ok(self) -> bool:
        return not self.failed and all(f.status in ("done", "skipped") for f in self.files)

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.done)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> list[str]:
        other = len(self.files) - len(self.done) - len(self.skipped) - len(self.failed)
        lines = [f"{len(self.done)} done, {len(self.skipped)} skipped (done before), "
                 f"{len(self.failed)} failed" + (f", {other} not finished" if other else "")
                 + f"; {self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps)"
                 + (f"; {self.workers}" if self.workers else "")]
        lines += [f"failed: {f.error}" if str(f.input) in (f.error or "")
                  else f"failed: {f.input}: {f.error}" for f in self.failed]
        lines.append(f"ledger: {self.ledger}")
        return lines


# -- progress -------------------------------------------------------------------------------------
class BatchProgress:
    """One line for the whole batch: files, frames, fps, ETA (from the bytes of files done)."""

    def __init__(self, planned: list[Planned], label: str, enabled: bool, stream=None):
        self.enabled, self.label = enabled, label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = len(planned)
        self.bytes_total = sum(_identity(p.input)["input_bytes"] or 0 for p in planned)
        self.files = self.bytes_done = 0
        self.per_job: dict[int, int] = {}
        self.t0 = time.perf_counter()
        self._last = 0.0

    @property
    def frames(self) -> int:
        return sum(self.per_job.values())

    def event(self, ev: tuple) -> None:
        kind, index = ev[0], ev[1]
        if kind == "start":  # a retried job starts counting again
            self.per_job[index] = 0
        elif kind == "frames":
            self.per_job[index] = self.per_job.get(index, 0) + ev[2]
        self._maybe_draw()

    def file_done(self, p: Planned) -> None:
        self.files += 1
        self.bytes_done += _identity(p.input)["input_bytes"] or 0
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        now = time.perf_counter()
        if self.enabled and now - self._last >= (0.25 if self.tty else 5.0):
            self._last = now
            self._draw()

    def _draw(self, end: str = "") -> None:
        dt = time.perf_counter() - self.t0
        fps = self.frames / dt if dt > 0 else 0.0
        frac = self.files / self.total if self.total else 1.0
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        eta = ""
        if 0 < self.bytes_done < self.bytes_total:
            left = dt * (self.bytes_total - self.bytes_done) / self.bytes_done
            eta = f" ETA {int(left // 60)}:{int(left % 60):02d}"
        text = (f"{self.label} [{bar}] {self.files}/{self.total} files {self.frames} frames "
                f"{fps:6.1f} fps{eta}")
        self.stream.write(("\r" + text.ljust(79) + end) if self.tty else text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw(end="\n" if self.tty else "")


# -- local workers --------------------------------------------------------------------------------
def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """NVIDIA GPUs this process may use, counted without importing torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def _gpu_backend(backend: str) -> bool:
    from . import engines

    if backend in ("tensorrt", "torch"):
        return True
    return backend == "auto" and engines.nvidia_driver_present() and (
        engines._installed("torch") or engines._installed("tensorrt"))


def local_workers(backend: str, jobs: int | None, threads: int | None, per_gpu: int = 1,
                  files: int | None = None) -> tuple[int, int | None, list[str]]:
    """(files at once, backend threads per file, GPUs) for this machine, never more files at
    once than ``files`` (the files to do). GPUs: ``per_gpu`` files on each. CPUs: one file per
    core, each backend on one thread (the model's threads never exceed the cores: decode and
    encode run beside it), or cores / files at once threads each when ``jobs`` is given or
    there are fewer files than cores."""
    gpus = visible_gpus() if _gpu_backend(backend) else []
    if gpus:
        jobs = jobs or len(gpus) * per_gpu
        return min(jobs, files or jobs), threads, gpus
    cores = cpu_cores()
    jobs = jobs or max(1, cores // (threads or 1))
    jobs = min(jobs, files or jobs)
    return jobs, threads or max(1, cores // jobs), []


def _run_local(todo: list[Job], settings: Settings, n: int, gpus: list[str],
               on_event: Callable[[tuple], None], on_result: Callable[[Job, dict], None]) -> None:
    """Run ``todo`` in ``n`` worker processes (spawned: nothing of the driver's state is
    shared). A worker that dies (killed, out of memory) fails the file it was on; the files
    not started yet go on in a fresh pool. Workers die with the driver (``jobs._die_with``;
    the kernel ties that to the thread that started them: this one, which outlives them)."""
    import multiprocessing as mp
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from . import jobs as worker

    ctx = mp.get_context("spawn")
    stop, events, counter = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
    pending = list(todo)
    running: dict[int, int] = {}  # job index -> worker pid, from the workers' start events

    def drain():
        while True:
            try:
                ev = events.get_nowait()
            except queue.Empty:
                return
            if ev[0] == "start":
                running[ev[1]] = ev[2]
            on_event(ev)

    while pending:
        with ProcessPoolExecutor(min(n, len(pending)), mp_context=ctx,
                                 initializer=worker.init_local_worker,
                                 initargs=(stop, events, gpus, counter, os.getpid())) as pool:
            futures = {pool.submit(worker.run_local_job, j, settings): j for j in pending}
            pending = []
            try:
                while futures:
                    done, _ = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                    drain()
                    for f in done:
                        job = futures.pop(f)
                        try:
                            rec = f.result()
                        except BrokenProcessPool:
                            drain()
                            if job.index not in running:
                                pending.append(job)
                                continue
                            rec = {"status": "failed", "exit_code": errors.EXIT_INTERNAL,
                                   "error": "the worker process died while translating it "
                                            "(killed, or out of memory)"}
                        running.pop(job.index, None)
                        on_result(job, rec)
            except KeyboardInterrupt:
                stop.set()  # workers stop at their next frame and discard the partial file
                for f in futures:
                    f.cancel()
                finished, _ = wait(futures, timeout=STOP_WAIT)
                drain()
                for f in finished:
                    if not f.cancelled() and f.exception() is None:
                        on_result(futures[f], f.result())
                raise


# -- the batch ------------------------------------------------------------------------------------
def translate_many(inputs, task: str = "derain", out_dir="out", *, jobs: int | None = None,
                   cluster: str | None = None, backend: str = "auto", precision: str = "auto",
                   size: int | None = None, tile: int | None = None,
                   batch_size: int | None = None, threads: int | None = None,
                   per_gpu: int = 1, hwaccel: str = "auto", night_exposure: str | None = None,
                   encode: EncodeOptions | None = None,
                   overwrite: bool = False, start: float = 0.0, duration: float | None = None,
                   frames: int | None = None, compare: bool = False,
                   progress: bool = False, on_start: Callable[[str], None] | None = None
                   ) -> BatchReport:
    """Translate every video of ``inputs`` (files, folders searched for videos, glob patterns)
    into ``out_dir``, keeping their relative layout; returns a ``BatchReport`` (one
    ``FileReport`` per input). A file that fails is recorded and the batch goes on.

    ``jobs``: files at once in local worker processes (default: one per GPU, or one per CPU
    core with one backend thread each). ``cluster``: "ray" (a Ray instance on this machine),
    "auto" (join the running cluster), "ray://HOST:PORT" (Ray Client) or "HOST:PORT" (the
    head's address): the same jobs as Ray tasks (``pip install 'streamgan[cluster]'``).
    ``per_gpu``: files sharing one GPU. Rerunning skips the files the ledger records as done
    (same input size and mtime, same settings, output unchanged) and retries the others; an
    output the ledger shows this batch wrote is replaced when its input or the settings changed,
    any other file at an output path only with ``overwrite``. One batch at a time writes into
    ``out_dir`` (a second one gets ``OutputError`` naming the first one's pid and host).
    Ctrl-C / SIGTERM (as ``KeyboardInterrupt``) stops the workers at their next frame (their
    partial outputs discarded), records what finished and raises ``Interrupted`` with
    ``.report``. ``on_start`` gets one line saying what runs where, once workers are chosen.
    """
    if jobs is not None and jobs < 1:
        raise UsageError(f"{errors.flag('--jobs', 'jobs')} must be at least 1 (got {jobs})")
    if per_gpu < 1:
        raise UsageError(f"{errors.flag('--per-gpu', 'per_gpu')} must be at least 1")
    encode = encode or EncodeOptions()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} is not a folder")
    planned = plan(inputs, task, out_dir)
    encode.choice(".mp4")  # a codec, preset or crf that cannot work fails before any work
    settings = Settings(task=str(task), backend=backend, precision=precision, size=size,
                        tile=tile, batch_size=batch_size, hwaccel=hwaccel, threads=threads,
                        night_exposure=night_exposure, encode=encode, overwrite=overwrite,
                        start=start, duration=duration, frames=frames, compare=compare, cli_wording=errors.cli_wording_on())
    fp = json.loads(json.dumps(settings.fingerprint()))  # loads the model: a bad one fails here
    t0 = time.perf_counter()
    runner = None
    if cluster is not None:
        from . import cluster as ray_cluster  # imports ray: only when asked

        runner = ray_cluster.connect(cluster)
    startup = time.perf_counter() - t0
    try:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot create the output folder "
                              f"({e.strerror or e})") from None
        with out_dir_lock(out_dir), Ledger(out_dir) as ledger:
            return _run(planned, settings, fp, ledger, runner, jobs, per_gpu, startup, progress,
                        on_start)
    finally:
        if runner is not None:
            runner.close()


def _workers(settings: Settings, files: int, runner, jobs: int | None,
             per_gpu: int) -> tuple[Settings, str, tuple | None]:
    """For ``files`` files to do: the settings with the backend threads per file, one line
    saying what runs where, and (files at once, GPUs) for local workers."""
    if runner is not None:
        threads = settings.threads or 1
        describe = runner.plan(settings.backend, threads, per_gpu)
        return dataclasses.replace(settings, threads=threads), describe, None
    n, threads, gpus = local_workers(settings.backend, jobs, settings.threads, per_gpu, files)
    describe = (f"{n} local worker{'s' if n > 1 else ''}, "
                + (f"{per_gpu} per GPU on {len(gpus)} GPU(s)" if gpus
                   else f"{threads} backend thread{'s' if threads > 1 else ''} each"))
    return dataclasses.replace(settings, threads=threads), describe, (n, gpus)


def _run(planned, settings, fp, ledger, runner, jobs, per_gpu, startup, progress, on_start):
    t0 = time.perf_counter()
    before = ledger.load()
    reports: dict[int, FileReport] = {}
    todo: list[Job] = []
    for i, p in enumerate(planned):
        if _is_done(before.get(str(p.input)), p, fp):
            rec = before[str(p.input)]
            reports[i] = FileReport(p.input, p.output, "skipped", rec.get("frames", 0))
        else:
            # an output this batch wrote from an older input (or other settings) is redone;
            # any other file already there is left alone unless overwrite (-y)
            reports[i] = FileReport(p.input, p.output, "not started")
            todo.append(Job(i, str(p.input), str(p.output),
                            replace=_own_output(before.get(str(p.input)), p)))
    bar = BatchProgress([planned[j.index] for j in todo], Path(settings.task).stem, progress)

    def record(job: Job, status: str, **fields) -> dict:
        p = planned[job.index]
        return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "input": str(p.input),
                "output": str(p.output), **_identity(p.input), "settings": fp,
                "status": status, **fields}

    def on_result(job: Job, rec: dict) -> None:
        p = planned[job.index]
        if p.error and rec.get("status") != "stopped":
            rec = {"status": "failed", "error": p.error, "exit_code": errors.EXIT_INPUT}
        r = reports[job.index]
        r.status = rec.get("status", "failed")
        r.frames, r.seconds = rec.get("frames", 0), rec.get("seconds", 0.0)
        r.fps, r.bad_frames = rec.get("fps", 0.0), rec.get("bad_frames", 0)
        r.error, r.exit_code = rec.get("error"), rec.get("exit_code")
        ledger.append(record(job, r.status, frames=r.frames, seconds=r.seconds, fps=r.fps,
                             bad_frames=r.bad_frames, error=r.error, exit_code=r.exit_code,
                             output_bytes=rec.get("output_bytes")))
        bar.file_done(p)

    missing = [j for j in todo if planned[j.index].error]
    todo = [j for j in todo if not planned[j.index].error]
    for j in missing:  # named but absent: recorded, never sent to a worker
        on_result(j, {})
    describe, stopped = "", None
    if todo:
        settings, describe, pool = _workers(settings, len(todo), runner, jobs, per_gpu)
        for j in todo:  # the layout under OUT/: made here, before any worker writes
            Path(j.output).parent.mkdir(parents=True, exist_ok=True)
        # queued: what the output path held (nothing, or this batch's own output: "claimed"),
        # so that after a driver killed before it learned an outcome, the rerun knows an output
        # that appeared there for this batch's (_own_output)
        ledger.append(*(record(j, "queued", claimed=j.replace or not os.path.lexists(j.output))
                        for j in todo))
        if on_start is not None:
            on_start(describe)
        try:
            if runner is not None:
                runner.run(todo, settings, bar.event, on_result)
            else:
                _run_local(todo, settings, *pool, bar.event, on_result)
        except KeyboardInterrupt as e:
            stopped = e
            ledger.append(*(record(j, "stopped", error="stopped with the batch")
                            for j in todo if reports[j.index].status == "not started"))
    bar.finish()
    report = BatchReport([reports[i] for i in range(len(planned))],
                         time.perf_counter() - t0, ledger.path, describe, startup)
    if stopped is not None:
        how = "interrupted" if errors.stop_exit_code(stopped) == errors.EXIT_INTERRUPTED \
            else f"stopped by {stopped}"
        n = len(report.done)
        err = Interrupted(f"{how}: {n} file{'' if n == 1 else 's'} finished this run kept and "
                          f"recorded in {ledger.path}; run the same command again to do the rest")
        err.exit_code = errors.stop_exit_code(stopped)
        err.report = report
        raise err
    return report
