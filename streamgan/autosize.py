"""``--size auto`` for live runs: the model's processing size follows what the engine can do.

While the engine takes longer a frame than the input's frame interval (the camera outruns the model and
frames are dropped), the short side the model runs at is lowered, never below a floor; when the engine
has room again it is raised, never above where it started (the card's policy, or ``--size``). The frame
leaves at its own size either way: the outputs scale it back. Each change is said in the log and kept
(``AutoSize.changes``) for the run's summary.

The sizes form a ladder, each short side about 0.9 of the one above (multiples of 8) down to the floor.
Before the first frame every rung is built and timed (``calibrate``), so a change costs no engine build
mid-stream and the first size already fits. During the run the engine's time a frame, judged over about a
second of calls, scales those timings to the machine's load of the moment: above ``DOWN`` of the frame
interval the size goes down to the largest rung predicted within ``AIM`` of it; below ``UP`` it goes up
one rung, when a larger one is predicted within ``AIM_UP`` (a size found too slow is not gone back to for
``REMEMBER`` seconds). The margins leave the decoder and encoder their share of the CPU.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable

from .frames import plan_size
from .io import resize

log = logging.getLogger("streamgan")

DOWN = 0.95  # engine time a frame over this share of the interval: smaller
UP = 0.55  # under this share: larger (if it has not reached where it started)
AIM = 0.7  # the share of the interval a smaller size is chosen to take
AIM_UP = 0.65  # and a larger one
START_AIM = 0.6  # the first size, timed alone before the run (decoding and encoding then share the CPU)
REMEMBER = 30.0  # seconds a size found too slow is not gone back to
RUNG = 0.9  # each short side of the ladder about this share of the one above
STEP = 8  # short sides are multiples of this
WINDOW = 1.0  # seconds of engine calls judged together
SETTLE = 3.0  # seconds after a change before the size goes up again
FLOOR_SHARE = 0.6  # default floor: this share of the short side it starts at


class AutoSize:
    """The processing size of one live input (``source``: a live or paced source whose ``size``
    the decoder scales to) for a model that must keep up with ``rate`` frames a second, on an engine
    it shares with ``share`` - 1 other inputs of that rate (``serve``)."""

    def __init__(self, source, rate: float, floor: int | None = None, share: float = 1.0):
        self.source = source
        # the input's own frame interval: the declared rate's, until its own is measured; ``share``: the
        # engine's frames a second over this input's (serve: all cameras' rates over this one's)
        self.own, self.share = 1.0 / rate, share
        self._arrivals: deque = deque()  # (captured, index) of frames taken, for the input's rate
        self.full = (source.width, source.height)
        self.start = min(source.size or self.full)
        self.floor = min(self.start, floor or max(STEP, _down(FLOOR_SHARE * self.start)))
        if floor and floor >= self.start:
            log.warning("notice: --min-size %d is not below the size the model starts at (%d): "
                        "--size auto has nothing to change", floor, self.start)
        self.ladder = [self.start]
        while self.ladder[-1] > self.floor:
            self.ladder.append(max(self.floor, min(self.ladder[-1] - STEP, _down(RUNG * self.ladder[-1]))))
        self.cost = {s: None for s in self.ladder}  # seconds a frame at each rung, when calibrated
        self.short = self.start
        self.size = source.size or self.full
        self.changes: list[tuple[float, int, int, float]] = []  # (seconds in, from, to, ms a frame)
        self.t0 = self._since = time.perf_counter()
        self._calls: deque = deque()
        self._too_slow: tuple[int, float] | None = None  # (short side, when)

    @property
    def interval(self) -> float:
        """The engine's time a frame of this input may take."""
        return self.own / self.share

    def size_of(self, short: int) -> tuple[int, int]:
        return plan_size(*self.full, size=short)

    def calibrate(self, timer: Callable[[tuple[int, int]], float]) -> None:
        """Build and time every rung (``timer(size)``: seconds a frame, the engine warm), then start
        at the largest that fits."""
        for s in list(self.ladder):
            try:
                self.cost[s] = timer(self.size_of(s))
            except Exception as e:  # noqa: BLE001 - a size the engine cannot take is left out
                if s == self.start:
                    raise
                log.warning("notice: --size auto leaves out short side %d (%s)", s,
                            (str(e).splitlines() or [type(e).__name__])[0][:200])
                self.ladder.remove(s)
                del self.cost[s]
        self.floor = self.ladder[-1]
        fits = [s for s in self.ladder if self.cost[s] <= START_AIM * self.interval]
        first = fits[0] if fits else self.ladder[-1]
        self.t0 = time.perf_counter()  # changes are timed from the start of the run
        if first != self.short:
            self._switch(first, self.cost[self.start])

    def wrap(self, process: Callable[[list], list]) -> Callable[[list], list]:
        """``process`` (a Pipeline's engine step) with the size followed: frames decoded before a
        change are scaled to the new size first, and each call's time is judged."""
        def run(batch: list) -> list:
            w, h = self.size
            for f in batch:
                if f.image.shape[1] != w or f.image.shape[0] != h:
                    f.image = resize(f.image, w, h)
            self.arrived([(getattr(f, "captured", None), getattr(f, "index", None)) for f in batch])
            t0 = time.perf_counter()
            out = process(batch)
            self.observe(time.perf_counter() - t0, len(batch))
            return out
        return run

    def arrived(self, frames: list[tuple[float | None, int | None]]) -> None:
        """(capture time, frame index) of frames taken by the engine: the input's own rate, counted
        from the indices (the frames dropped between included), replaces the declared one once two
        seconds are seen (a camera that delivers faster or slower than it says, or says nothing)."""
        for captured, index in frames:
            if captured is None or index is None:
                continue
            if self._arrivals and index <= self._arrivals[-1][1]:
                self._arrivals.clear()  # a reconnection or a new stream: count again
            self._arrivals.append((captured, index))
        while len(self._arrivals) > 2 and self._arrivals[-1][0] - self._arrivals[1][0] > 2.0:
            self._arrivals.popleft()
        if len(self._arrivals) > 10:
            (t0, i0), (t1, i1) = self._arrivals[0], self._arrivals[-1]
            if t1 - t0 >= 2.0 and 1 / 240 <= (t1 - t0) / (i1 - i0) <= 1.0:
                self.own = (t1 - t0) / (i1 - i0)

    def observe(self, seconds: float, frames: int) -> None:
        now = time.perf_counter()
        self._calls.append((now, seconds / max(frames, 1)))
        while len(self._calls) > 3 and now - self._calls[0][0] > WINDOW:  # a second, or 3 calls
            self._calls.popleft()
        if now - self._since < WINDOW or len(self._calls) < 3:
            return
        per = sum(s for _, s in self._calls) / len(self._calls)
        if per > DOWN * self.interval and self.short > self.floor:
            self._switch(self._largest(per, AIM, self.short - 1), per)
        elif per < UP * self.interval and self.short < self.start and now - self._since > SETTLE:
            top = self.start
            if self._too_slow and now - self._too_slow[1] < REMEMBER:
                top = self._too_slow[0] - 1
            new = self._largest(per, AIM_UP, top)
            if new > self.short:  # one rung at a time: a larger size costs more than timed alone
                self._switch(min(s for s in self.ladder if s > self.short), per)

    def _largest(self, per: float, aim: float, top: int) -> int:
        """The largest rung up to ``top`` predicted to take at most ``aim`` of the interval: the
        calibrated times scaled by how the current rung's compares now (else cost ~ pixels)."""
        def predicted(s: int) -> float:
            if self.cost[s] and self.cost[self.short]:
                return self.cost[s] * per / self.cost[self.short]
            return per * (s / self.short) ** 2
        rungs = [s for s in self.ladder if s <= top]
        return next((s for s in rungs if predicted(s) <= aim * self.interval), rungs[-1] if rungs else self.short)

    def _switch(self, short: int, per: float) -> None:
        size = self.size_of(short)
        if short < self.short:
            self._too_slow = (self.short, time.perf_counter())
        old, self.short, self.size = self.short, short, size
        self.source.size = None if size == self.full else size
        self.changes.append((time.perf_counter() - self.t0, old, short, 1000 * per))
        self._since = time.perf_counter()
        self._calls.clear()
        log.warning("notice: the model took %.0f ms a frame where the input allows %.0f ms: it "
                    "runs at short side %d now (was %d; --size auto, floor %d)", 1000 * per,
                    1000 * self.interval, short, old, self.floor)

    def lines(self) -> list[str]:
        if not self.changes:
            return [f"size auto: stayed at short side {self.start} (floor {self.floor})"]
        steps = ", ".join(f"{a} -> {b} at {t:.1f} s ({ms:.0f} ms a frame)"
                          for t, a, b, ms in self.changes)
        return [f"size auto: {steps}; ended at short side {self.short} (floor {self.floor}; the "
                f"input allows {1000 * self.interval:.0f} ms a frame)"]


def _down(v: float) -> int:
    return max(STEP, int(v // STEP) * STEP)
