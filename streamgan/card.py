"""The model card: a pydantic model describing one plugin, validated on load.

A plugin folder holds ``card.yaml`` and the ONNX file it names. The card says what the model does,
how frames must be prepared for it, what it was trained on (and under which licences), how well it
scored, and the sha256 of its weights so a corrupt or swapped file is caught before it runs.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelError

CARD_FILE = "card.yaml"
NAME = r"^[a-z][a-z0-9_]*$"  # a task's or a night exposure's name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalisation(_Strict):
    """x_model = (x_uint8 / 255 - mean) / std, per RGB channel; the inverse on output."""

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @model_validator(mode="after")
    def _usable(self):
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValueError("mean and std must be finite numbers")
        if not all(v > 0 for v in self.std):
            raise ValueError(f"std must be more than 0 for every channel, got {list(self.std)} "
                             "(a division by it would give infinite values)")
        return self


class Processing(_Strict):
    """At which resolution the model runs; frames come back at the source resolution.

    ``native``: the model sees the frame as it is. ``short_side``: the runtime scales the frame to
    ``short_side`` for the model and the output back. ``source``: the model takes the source frame and
    runs its network at ``short_side`` inside its own graph, applying the correction at full resolution
    (the runtime passes the frame as it is)."""

    policy: Literal["native", "short_side", "source"] = "native"
    short_side: int | None = Field(default=None, ge=16)
    size_multiple: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _needs_side(self):
        if self.policy in ("short_side", "source") and self.short_side is None:
            raise ValueError(f"policy '{self.policy}' needs short_side")
        return self


class DataSource(_Strict):
    name: str
    path: str
    licence: str
    count: int | None = None


class Training(_Strict):
    config: str | None = None
    data: list[DataSource] = []
    steps: int | None = None
    wall_time_s: float | None = None
    device: str | None = None
    notes: str | None = None


class Weights(_Strict):
    file: str = "model.onnx"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int | None = None


class Int8(_Strict):
    """The model quantised to int8 for CPUs (NNCF post-training quantisation, saved as OpenVINO IR
    beside the fp32 ONNX): its files and their sha256, how it was calibrated, which layers were
    kept in higher precision, its own measured quality beside the fp32 model's, and whether it
    passed the task's quality gate. ``--precision auto`` uses it only where ``passed`` is true."""

    file: str = "model.int8.xml"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    weights_file: str = "model.int8.bin"
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    of_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # the fp32 ONNX it came from
    tool: str | None = None
    calibration: dict[str, int | float | str | list] = {}
    ignored_scope: list[str] = []
    gate: str | None = None
    metrics: dict[str, float | str | dict] = {}
    passed: bool


class StateTensor(_Strict):
    """One state tensor of a temporal model: the graph input that takes it, the graph output that
    returns the new one, its channels. It is float32 N x channels x h x w at the size the model's
    network runs divided by ``scale`` (``streamgan.temporal.state_size``); a stream starts with zeros."""

    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    channels: int = Field(ge=1)
    scale: int = Field(default=1, ge=1)


class Temporal(_Strict):
    """A temporal model: its graph takes the frame plus state and returns the frame plus the new
    state (the runtime keeps one state per stream, see ``streamgan.temporal``)."""

    state: list[StateTensor] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self):
        names = [n for s in self.state for n in (s.input, s.output)]
        if len(set(names)) != len(names):
            raise ValueError(f"state input and output names must all differ, got {names}")
        return self


class NightExposure(_Strict):
    """The night exposures a day-to-night plugin offers (``--night-exposure``), each its own graph:
    ``default`` is the weights' graph; ``others`` maps each further name to its file (the same network,
    its renderer set to that exposure). ``about``: one line per name for ``streamgan models``."""

    default: str = Field(pattern=NAME)
    others: dict[str, Weights] = {}
    about: dict[str, str] = {}

    @model_validator(mode="after")
    def _names(self):
        if self.default in self.others:
            raise ValueError(f"'{self.default}' is the default (the weights' graph) and in others too")
        bad = [n for n in self.others if not re.match(NAME, n)]
        if bad:
            raise ValueError(f"exposure names must be lower-case words, got {bad}")
        unknown = sorted(set(self.about) - set(self.names))
        if unknown:
            raise ValueError(f"about names exposures the card does not offer: {unknown}")
        return self

    @property
    def names(self) -> list[str]:
        return [self.default, *self.others]


class ModelCard(_Strict):
    task: str = Field(pattern=NAME)
    title: str
    direction: str  # e.g. "rainy -> clear"
    architecture: str
    version: str = "0"
    licence: str
    normalisation: Normalisation = Normalisation()
    processing: Processing = Processing()
    weights: Weights
    training: Training = Training()
    metrics: dict[str, float | str | dict] = {}
    limitations: str | None = None
    int8: Int8 | None = None
    temporal: Temporal | None = None
    night_exposure: NightExposure | None = None

    @model_validator(mode="after")
    def _state_scale(self):
        for s in self.temporal.state if self.temporal else ():
            if self.processing.size_multiple % s.scale:
                raise ValueError(f"temporal state '{s.input}': scale {s.scale} must divide the processing "
                                 f"size_multiple {self.processing.size_multiple}")
        return self

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        raw = read_yaml_mapping(path, ModelError, "model card")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise ModelError(
                f"model card {path}: field '{field}': {first['msg']}"
                + (f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else "")
            ) from None

    def dump(self, path: str | Path) -> None:
        """Write the card atomically (temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        data = self.model_dump(mode="json")
        for key in ("int8", "temporal", "night_exposure"):
            if data.get(key) is None:
                data.pop(key, None)
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        tmp.replace(path)


def read_yaml_mapping(path: Path, error: type[Exception], what: str) -> dict:
    """A YAML file that must hold a mapping; every failure is ``error`` naming ``what`` and path."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must be a mapping, got {type(raw).__name__}")
    return raw


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
