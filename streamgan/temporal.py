"""The state of temporal models, kept per stream in one place.

A temporal plugin's graph takes the frame plus its state and returns the frame plus the new state
(the card's ``temporal`` section names them). ``Streams`` holds the state of every stream a
``Translator`` runs: a file, an image sequence, each file of a batch job, each live camera (also
when frames of several cameras share one engine call: each frame gets its own camera's state), the
Python API's default stream. Frames of one stream run in their order, one engine call per frame of
a stream (their states chain); frames of different streams share a call.

A stream's state starts as zeros and goes back to zeros (said once per stream and reason at debug
level) when the frame size changes, when time jumps (a seek, a decode gap, a burst of frames dropped
in live: more than ``GAP`` typical steps between the frames the stream ran and more than ``MIN_GAP``
seconds, or backwards) and at a
scene cut (the mean change of a small luma thumbnail above ``CUT``). The typical step is a running
mean of those steps, so a live engine slower than its camera, taking every second or third frame
unevenly, keeps its state. A lone image runs with the zero state.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from .errors import ModelError

log = logging.getLogger("streamgan")

GAP = 2.5  # a time step longer than this many typical steps resets the state ...
MIN_GAP = 0.5  # ... if it is also longer than this many seconds (a live engine's stall is not a seek)
CUT = 0.2  # mean absolute change of a luma thumbnail (0..1) from one frame to the next: a scene cut
_ids = itertools.count()


def state_size(width: int, height: int, processing, scale: int = 1) -> tuple[int, int]:
    """(w, h) of the state for frames of width x height as the backend gets them: the size the
    graph's network runs at divided by the state's ``scale`` (its card's). Where the card's policy is
    'source' the network runs at ``short_side`` (never upscaled), rounded down to the size multiple,
    in integers as the exported graph computes it; otherwise at the frame's size."""
    if processing.policy == "source":
        short, side, m = min(width, height), processing.short_side, processing.size_multiple
        if short > side:
            width, height = width * side // short, height * side // short
        width, height = width // m * m, height // m * m
    return width // scale, height // scale


@dataclass
class _Stream:
    state: list[np.ndarray] | None = None  # one per card state, 1 x C x h x w
    time: float | None = None
    interval: float | None = None  # typical time between frames
    thumb: np.ndarray | None = None
    said: set = field(default_factory=set)
    name: str = ""


class Streams:
    """Per-stream state of one temporal model (``model``: a ``plugins.Model`` whose card has a
    temporal section)."""

    def __init__(self, model):
        self.model = model
        self.specs = model.temporal.state
        self._streams: dict = {}

    def open(self, name: str = "") -> int:
        """A new stream (zero state); returns its key."""
        key = next(_ids)
        self._streams[key] = _Stream(name=name)
        return key

    def close(self, key) -> None:
        self._streams.pop(key, None)

    def reset(self, key=None) -> None:
        """Back to the zero state: one stream, or every stream."""
        for k in ([key] if key is not None else list(self._streams)):
            if k in self._streams:
                self._streams[k] = _Stream(name=self._streams[k].name)

    def _stream(self, key) -> _Stream:
        s = self._streams.get(key)
        if s is None:  # a caller's own key (the API's stream= names): opened on first use
            s = self._streams[key] = _Stream(name=str(key))
        return s

    def _forget(self, s: _Stream, why: str, detail: str = "") -> None:
        if s.state is not None and why not in s.said:
            s.said.add(why)
            log.debug("%s: temporal state reset for stream %s: %s%s (said once)",
                      self.model.task, s.name or "?", why, detail)
        s.state = None

    def _observe(self, s: _Stream, image: np.ndarray, t: float | None) -> None:
        """Resets for time jumps and scene cuts, before the frame runs."""
        if t is not None and s.time is not None:
            dt = t - s.time
            if dt < 0:
                self._forget(s, "time went back")
            elif s.interval is not None and dt > max(GAP * s.interval, MIN_GAP):
                self._forget(s, "a gap in time", f" of {dt:.3g} s (frames missing, a seek or "
                             "frames dropped)")
                s.interval = None  # the pace after the gap is learnt again from the next step
            elif dt > 0:  # the running mean of the steps: uneven skips (2, 1, 3 frames) are its pace too
                s.interval = dt if s.interval is None else 0.8 * s.interval + 0.2 * dt
        s.time = t
        thumb = _thumb(image)
        if s.thumb is not None and thumb.shape == s.thumb.shape and \
                float(np.abs(thumb - s.thumb).mean()) > CUT:
            self._forget(s, "a scene cut")
        s.thumb = thumb

    def run(self, call, batch: np.ndarray, keys: list, times: list | None = None,
            i420: bool = False) -> np.ndarray:
        """Run ``batch`` (N frames, uint8 RGB NHWC or I420 N x H*3/2 x W) through
        ``call(frames, states_for) -> (out, new states)`` (``states_for(w, h)``: the group's
        states at the size the backend gets): frames in order, at most one frame of a stream per
        call, each frame with its stream's state."""
        times = times if times is not None else [None] * len(keys)
        out: list = [None] * len(keys)
        todo = list(range(len(keys)))
        while todo:
            group, seen, rest = [], set(), []
            for i in todo:
                (rest if keys[i] in seen else group).append(i)
                seen.add(keys[i])
            todo = rest
            streams = [self._stream(keys[i]) for i in group]
            for i, s in zip(group, streams):
                self._observe(s, _luma_plane(batch[i], i420), times[i])
            frames = batch[group] if len(group) > 1 else batch[group[0]][None]

            def states_for(w: int, h: int) -> list[np.ndarray]:
                shapes = [(1, spec.channels, *state_size(w, h, self.model.processing, spec.scale)[::-1])
                          for spec in self.specs]
                per = []
                for s in streams:
                    if s.state is not None and [t.shape for t in s.state] != shapes:
                        self._forget(s, "the frame size changed")
                    if s.state is None:
                        s.state = [np.zeros(shape, np.float32) for shape in shapes]
                    per.append(s.state)
                return [np.concatenate(parts) if len(parts) > 1 else parts[0]
                        for parts in zip(*per)]

            result, new = call(frames, states_for)
            for j, (i, s) in enumerate(zip(group, streams)):
                out[i] = result[j]
                s.state = [np.ascontiguousarray(t[j:j + 1]) for t in new]
        return np.stack(out)

    def check(self, given: list[np.ndarray], new: list) -> list[np.ndarray]:
        """The graph's new state must match the state it was given (shape and float32)."""
        if len(new) != len(given):
            raise ModelError(f"{self.model.onnx}: returned {len(new)} state tensors, its card "
                             f"declares {len(given)}")
        for spec, g, n in zip(self.specs, given, new):
            n = np.asarray(n)
            if n.shape != g.shape or n.dtype != np.float32:
                raise ModelError(f"{self.model.onnx}: its state '{spec.output}' comes back as "
                                 f"{n.dtype} {tuple(n.shape)}; it was given as float32 "
                                 f"{tuple(g.shape)} ('{spec.input}'): the graph must return its "
                                 "state as it takes it")
        return [np.asarray(n) for n in new]


def _luma_plane(frame: np.ndarray, i420: bool) -> np.ndarray:
    if i420:
        return frame[: frame.shape[0] * 2 // 3]
    return frame[..., 1]  # green: near enough to luma to see a cut


def _thumb(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape[:2]
    sy, sx = max(1, h // 24), max(1, w // 32)
    return plane[::sy, ::sx].astype(np.float32) / 255.0
