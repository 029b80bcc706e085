"""Decode thread -> batcher/engine thread -> the caller's thread, with bounded queues.

``Pipeline`` pulls ``Frame``s from a source on one thread, groups them into batches of up to
``batch_size`` frames of the same size and runs ``process`` on a second thread, and yields
``(frame, output)`` pairs in input order to whoever iterates it (the encoder in
``translate_video``, the user's loop in ``stream``). Queues are bounded, so an hour-long video
uses the same memory as a short one. An exception in any stage is carried to the consumer and
stops every stage; ``close()`` (also on Ctrl-C or when the consumer stops early) stops and joins
all threads, bounded in time, so nothing hangs.

For live inputs ``drop="oldest"`` makes the decode stage discard the oldest waiting frame (counted
in ``dropped``) instead of waiting when translation falls behind, so what is translated stays
current; the default ``"block"`` never loses a frame. With ``max_age`` (live runs: a frame
interval) a frame that has waited longer is skipped when a newer one waits, so the engine, when
free, takes the newest frame and no queue stands between the camera and the model, while a
burst of frames arriving together is kept. With ``fresh_wait`` as well, an engine that comes free
just before the next frame is due (within ``fresh_wait``) while its newest frame has waited most of
an interval waits for that next frame instead of starting on the old one: a frame then waits at
most about ``max_age - fresh_wait`` for the engine, for a little idle time. Each frame gets
``started`` and ``finished`` (perf_counter) of its engine call.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from typing import Callable, Iterable, Iterator

import numpy as np

_END = object()
_POLL = 0.1


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Pipeline:
    def __init__(self, source: Iterable, process: Callable[[list], list], *, batch_size: int = 1,
                 max_wait: float | None = None, queue_size: int = 8, drop: str = "block",
                 max_age: float | None = None, out_queue_size: int | None = None,
                 fresh_wait: float | None = None):
        if drop not in ("block", "oldest"):
            raise ValueError(f"drop policy must be 'block' or 'oldest', not {drop!r}")
        self.source, self.process = source, process
        self.drop = drop
        self.dropped = 0  # frames discarded by drop="oldest"
        # with drop="oldest": a frame captured (``frame.captured``, perf_counter) longer ago than
        # this when the engine reaches it is skipped if a newer one is waiting
        self.max_age = max_age
        # ... and with it: seconds the free engine may wait for a frame due that soon rather than
        # start on one that has already waited most of ``max_age``
        self.fresh_wait = fresh_wait if max_age is not None and fresh_wait else None
        self.batch_size = max(1, int(batch_size))
        self.max_wait = max_wait
        self._decoded: queue.Queue = queue.Queue(maxsize=max(queue_size, self.batch_size))
        self._done: queue.Queue = queue.Queue(
            maxsize=max(out_queue_size or queue_size, self.batch_size))
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guard, args=(self._read, self._decoded), daemon=True,
                             name="streamgan-decode"),
            threading.Thread(target=self._guard, args=(self._work, self._done), daemon=True,
                             name="streamgan-engine"),
        ]
        self.frames_in = 0
        self.fresh_waits = 0  # frames skipped for one due within fresh_wait
        self._lag: float | None = None  # running mean of arrival to queued (decoding)
        self._arrivals: collections.deque = collections.deque(maxlen=31)  # the last arrivals
        self.batches = 0
        self.engine_seconds = 0.0
        self._started = False

    # -- plumbing -------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if wait <= 0:
                raise queue.Empty
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                continue
        raise _Stopped

    def _guard(self, stage, out: queue.Queue):
        try:
            stage()
        except _Stopped:
            return
        except BaseException as e:  # carried to the consumer, which re-raises it
            self._put(out, _Failure(e))
            return
        self._put(out, _END)

    # -- stages ---------------------------------------------------------------------------
    def _read(self):
        for frame in self.source:
            captured = getattr(frame, "captured", None) if self.fresh_wait is not None else None
            if captured is not None:  # the camera's own pace, and decoding's delay before the queue
                lag = time.perf_counter() - captured
                self._lag = lag if self._lag is None else 0.9 * self._lag + 0.1 * lag
                self._arrivals.append(captured)
            if self.drop == "oldest":
                self._put_dropping(frame)
            elif not self._put(self._decoded, frame):
                raise _Stopped
            self.frames_in += 1

    def _put_dropping(self, frame) -> None:
        """Queue ``frame`` at once, discarding the oldest waiting frame when the queue is full."""
        while not self._stop.is_set():
            try:
                self._decoded.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._decoded.get_nowait()  # only this thread puts here: it is a frame
                    self.dropped += 1
                except queue.Empty:
                    pass
        raise _Stopped

    def _next_batch(self, pending):
        """Collect up to batch_size same-sized frames; returns (batch, finished)."""
        batch = [pending.pop()] if pending else []
        finished = False
        deadline = None
        while len(batch) < self.batch_size:
            if batch and self.max_wait is not None:
                deadline = deadline or time.monotonic() + self.max_wait
                left = deadline - time.monotonic()
                try:  # past the wait, frames already queued still join the batch
                    item = self._decoded.get_nowait() if left <= 0 else \
                        self._get(self._decoded, timeout=left)
                except queue.Empty:
                    break
            else:
                item = self._get(self._decoded)
            if item is _END:
                finished = True
                break
            if isinstance(item, _Failure):
                raise item.exc
            if self.max_age is not None and self._stale(item):
                self.dropped += 1
                continue
            if batch and item.image.shape != batch[0].image.shape:
                pending.append(item)  # a size change closes the batch
                break
            if not batch and self.fresh_wait is not None:
                item, nxt = self._fresher(item)
                if nxt is not None:  # the stream ended, or a new size: this one alone
                    batch.append(item)
                    finished = nxt is _END
                    if nxt is not _END:
                        pending.append(nxt)
                    break
            batch.append(item)
        return batch, finished

    def _fresher(self, item):
        """(Engine free, ``item`` the first frame of a call.) If ``item`` is the newest frame and
        the next is due (at the camera's pace as seen) within ``fresh_wait``, wait for it (at most ``fresh_wait``) and take it
        instead (``item`` counted as dropped). Returns (frame to run, None), or (``item``, what
        came: the end of the stream, or a frame of another size, to run after it)."""
        captured = getattr(item, "captured", None)
        if captured is None:
            return item, None
        # the next frame, at the camera's pace (as seen over its last 30 frames, bursts and all; as
        # declared before), once decoded
        seen = self._arrivals
        step = (seen[-1] - seen[0]) / (len(seen) - 1) if len(seen) == seen.maxlen else self.max_age
        due = captured + step + (self._lag or 0.0) - time.perf_counter()
        if due <= 0 or due > self.fresh_wait or not self._decoded.empty():
            return item, None
        try:  # a frame a little late is still worth it; one much later is not
            nxt = self._get(self._decoded, timeout=min(due + self.fresh_wait / 2, self.fresh_wait))
        except queue.Empty:  # late: run the one at hand
            return item, None
        if isinstance(nxt, _Failure):
            raise nxt.exc
        if nxt is _END or nxt.image.shape != item.image.shape:
            return item, nxt
        self.dropped += 1
        self.fresh_waits += 1
        return nxt, None

    def _stale(self, item) -> bool:
        """Too old to be worth translating, and a newer frame is already waiting."""
        captured = getattr(item, "captured", None)
        if captured is None or time.perf_counter() - captured <= self.max_age:
            return False
        with self._decoded.mutex:
            if not self._decoded.queue:
                return False
            nxt = self._decoded.queue[0]
            return nxt is not _END and not isinstance(nxt, _Failure)

    def _work(self):
        pending: list = []
        finished = False
        while not finished or pending:
            batch, finished = self._next_batch(pending)
            if not batch:
                continue
            t0 = time.perf_counter()
            outputs = self.process(batch)
            t1 = time.perf_counter()
            self.engine_seconds += t1 - t0
            self.batches += 1
            for f in batch:  # when each frame's engine call began and ended (live latency)
                f.started, f.finished = t0, t1
            for item in zip(batch, outputs):
                if not self._put(self._done, item):
                    raise _Stopped

    # -- consumer side --------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple]:
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()
        try:
            while True:
                item = self._get(self._done)
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every stage and join the threads (bounded)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))


class _Stopped(Exception):
    pass


class Progress:
    """A one-line progress display on stderr: frames, percent, fps and ETA."""

    def __init__(self, total: int | None, enabled: bool = True, label: str = "", stream=None):
        self.total, self.enabled, self.label = total, enabled, label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.n = 0
        self._last = 0.0

    @property
    def fps(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.n / dt if dt > 0 else 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.enabled and now - self._last >= (0.25 if self.tty else 5.0):
            self._last = now
            self._draw()

    def _draw(self, end: str = "") -> None:
        fps = self.fps
        if self.total:
            frac = min(1.0, self.n / self.total)
            bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
            eta = (self.total - self.n) / fps if fps > 0 else 0
            text = (f"{self.label} [{bar}] {self.n}/{self.total} {100 * frac:3.0f}% "
                    f"{fps:6.1f} fps ETA {int(eta // 60)}:{int(eta % 60):02d}")
        else:
            text = f"{self.label} {self.n} frames {fps:6.1f} fps"
        if self.tty:
            self.stream.write("\r" + text.ljust(79) + end)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw(end="\n" if self.tty else "")


def stack(frames: list) -> np.ndarray:
    """N frames -> one NHWC batch (no copy for a single frame)."""
    if len(frames) == 1:
        return frames[0].image[None]
    return np.stack([f.image for f in frames])
