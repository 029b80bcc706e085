"""Training options: one YAML file per run (``configs/train_*.yaml``), validated by pydantic.

A config that fails validation raises :class:`ConfigError` naming the file and the first bad field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamgan.card import read_yaml_mapping
from streamgan.errors import StreamganError

REPO = Path(__file__).resolve().parent.parent  # the shipped configs' data paths start here


class ConfigError(Exception):
    """A config file is missing, is not YAML, or fails validation."""


class DataError(Exception):
    """A data folder is missing or empty, or an image/video does not decode."""


class CheckpointError(Exception):
    """A checkpoint is unreadable or was made for another architecture."""


# errors the user can fix: the commands print them as one line and exit with status 2
USER_ERRORS = (ConfigError, DataError, CheckpointError, StreamganError)


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataOptions(_Opts):
    # Domain A sources: folders (images, searched recursively), image files or video files.
    train_a: list[str] = Field(min_length=1)
    # Domain B sources: unpaired CycleGAN mode's second domain; in paired mode with lambda_gan, the real
    # target-domain frames the discriminator takes as real (e.g. real night frames beside synthetic pairs).
    train_b: list[str] = []
    # Paired mode: real degraded frames with no clean pair (e.g. real rain). The generator's outputs on
    # them are judged by the PatchGAN against real clean frames (``loss.lambda_real_gan``).
    train_real: list[str] = []
    # Held out for evaluation; their files are removed from the training pools.
    holdout_a: list[str] = []
    holdout_b: list[str] = []
    exclude: list[str] = []  # substrings of paths to leave out
    synth: Literal["none", "rain", "night"] = "none"
    synth_options: dict[str, float] = {}
    # Domain B night frames brighter than this median linear luma are darkened to it (highlights kept):
    # strong auto-gain night cameras record night as grey dusk (see data.normalise_exposure)
    normalise_b: float | None = Field(None, gt=0, lt=1)  # keyword arguments of the pair maker, e.g. {p_drops: 0.8}
    clean_fraction: float = Field(0.0, ge=0, le=1)  # share of synthetic pairs left untouched (input = target)
    crop: int = Field(256, ge=16)
    scale: tuple[float, float] = (0.5, 1.0)  # random resize factor before the crop
    max_side: int = Field(1280, ge=64)  # frames are stored at most this large (longer side)
    video_stride: int = Field(5, ge=1)  # every n-th frame of a video
    batch_size: int = Field(4, ge=1)
    # processes that make the synthetic pairs (paired mode); 0: the training process makes them. A GPU
    # trains faster than one CPU core synthesises, so GPU runs want about one per spare core.
    workers: int = Field(0, ge=0)


class GeneratorOptions(_Opts):
    kind: Literal["mobile", "resnet", "unet"] = "mobile"
    ngf: int = Field(16, ge=4)
    n_blocks: int = Field(6, ge=0)
    num_downs: int = Field(7, ge=2)  # unet only
    norm: Literal["instance", "batch", "none"] = "instance"
    skips: bool = True  # mobile only
    residual: bool = False  # mobile only
    out_kernel: Literal[3, 5, 7] = 7  # mobile only: the full-resolution output convolution's kernel

    def kwargs(self) -> dict:
        if self.kind == "mobile":
            return dict(ngf=self.ngf, n_blocks=self.n_blocks, norm=self.norm, skips=self.skips, residual=self.residual,
                        out_kernel=self.out_kernel)
        if self.kind == "resnet":
            return dict(ngf=self.ngf, n_blocks=self.n_blocks, norm=self.norm)
        return dict(ngf=self.ngf, num_downs=self.num_downs, norm=self.norm)


class DiscriminatorOptions(_Opts):
    ndf: int = Field(64, ge=4)
    n_layers: int = Field(3, ge=1)
    norm: Literal["instance", "batch", "none"] = "instance"


class ModelOptions(_Opts):
    generator: GeneratorOptions = GeneratorOptions()
    discriminator: DiscriminatorOptions = DiscriminatorOptions()


class LossOptions(_Opts):
    gan_mode: Literal["lsgan", "vanilla", "hinge"] = "lsgan"
    lambda_gan: float = Field(1.0, ge=0)
    lambda_cycle: float = Field(10.0, ge=0)
    lambda_identity: float = Field(0.5, ge=0)  # times lambda_cycle, as in CycleGAN
    lambda_l1: float = Field(0.0, ge=0)  # paired L1 (needs a synthesiser or paired data)
    l1_light_weight: float = Field(0.0, ge=0)  # extra L1 weight where the target is bright (lamps, lights: a few pixels)
    l1_sky_weight: float = Field(0.0, ge=0)  # extra L1 weight in the day frame's sky (day2night)
    l1_rain_weight: float = Field(0.0, ge=0)  # extra L1 weight where input and target differ (derain: the rain)
    lambda_ssim: float = Field(0.0, ge=0)  # paired (1 - SSIM)
    gan_start: int = Field(0, ge=0)  # paired mode: step at which the lambda_gan term (and D) starts
    lambda_real_gan: float = Field(0.0, ge=0)  # paired mode: adversarial term on outputs for data.train_real
    real_gan_start: int = Field(0, ge=0)  # step at which that term starts (after the paired warm-up)
    lambda_struct: float = Field(0.0, ge=0)  # structure kept: locally normalised luma, output vs input
    struct_off_sky: bool = False  # day2night: no structure term in the day frame's sky (night skies are dark)
    lambda_distill: float = Field(0.0, ge=0)  # L1 to a teacher generator's output
    teacher: str | None = None  # the teacher: a checkpoint, or a plugin's .onnx (architecture from teacher_generator)
    teacher_generator: GeneratorOptions | None = None


class OptimOptions(_Opts):
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    steps: int = Field(1000, ge=1)
    decay_start: int | None = None  # constant lr until here, then linear to 0 at ``steps`` (default: steps/2)
    # the lr rises linearly from lr/warmup to lr over the first ``warmup`` steps: a warm start is not jolted by
    # Adam's first steps, which move every weight by about lr whatever its gradient
    warmup: int = Field(0, ge=0)
    pool_size: int = Field(50, ge=0)


class TrainOptions(_Opts):
    out: str = "runs/run"
    threads: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision on CUDA only
    log_every: int = Field(25, ge=1)
    sample_every: int = Field(500, ge=1)
    checkpoint_every_s: float = Field(300, gt=0)
    init_generator: str | None = None  # warm start G (A->B) from this checkpoint
    # an exponential moving average of G's weights (this decay per step; 0: off), kept beside them in the
    # checkpoint; export, eval and warm starts then use the average, which moves less from step to step
    ema: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int = Field(0, ge=0)  # cyclegan: first train G alone on synthesiser pairs (paired L1)
    progress: bool = True

    @field_validator("out")
    @classmethod
    def _home(cls, v: str) -> str:  # runs live outside the work tree, e.g. ~/.cache/streamgan/runs/<name>
        return str(Path(v).expanduser())


class DataNote(_Opts):
    name: str
    path: str
    licence: str
    count: int | None = None


class ExportOptions(_Opts):
    plugin_dir: str = "plugins/x"
    title: str = "generator"
    direction: str = "A -> B"
    licence: str = "MIT"
    # native: the model sees the frame as it is; short_side: the runtime scales frames to short_side;
    # source: the exported graph scales to short_side itself and applies the correction at full size
    # (residual generators only; see networks.SourceResolution)
    policy: Literal["native", "short_side", "source"] = "native"
    short_side: int | None = None
    # day2night: the generator's output finished by the fixed light renderer (networks.Relit: dark sky,
    # lit tail lights and lamp heads where the day frame shows them)
    relight: bool = False
    # with relight: the night exposures exported (trainer.lights.EXPOSURES), each its own graph; the first is
    # the plugin's default (model.onnx), the others go beside it as model.<name>.onnx (``--night-exposure``)
    night_exposures: list[Literal["dashcam", "bright"]] = []
    limitations: str | None = None
    data_notes: list[DataNote] = []  # [{name, path, licence, count}] for the card

    @model_validator(mode="after")
    def _exposures(self):
        if self.night_exposures and not self.relight:
            raise ValueError("export.night_exposures are exposures of the light renderer: set export.relight")
        if len(set(self.night_exposures)) != len(self.night_exposures):
            raise ValueError(f"export.night_exposures names one twice: {self.night_exposures}")
        return self


class EvalOptions(_Opts):
    kind: Literal["derain", "day2night"] = "derain"
    rain12: str | None = None  # folder with rainy/ and clean/
    paired_sets: dict[str, str] = {}  # name -> folder with rainy/ and clean/ (same file names)
    real_rain: list[str] = []  # real degraded frames without pairs: before/after contact sheet
    real_clip: str | None = None  # a real degraded clip (video or frame folder) for flicker
    clean_hd: list[str] = []  # clean frames scored at 1280x720 against themselves (fidelity) and with thin streaks
    clip: str | None = None  # a real clip for the flicker ratio
    clip_frames: int = Field(50, ge=2)
    synthetic_pairs: int = Field(24, ge=1)  # from holdout_a frames
    size: tuple[int, int] = (640, 360)  # W, H used for held-out pairs / day2night evaluation
    # day2night: real dashcam night as it is recorded (not exposure-normalised), by set: each set (stills of one
    # dataset, frames of one clip: every night_real_stride-th) an equal share of the night-realism reference
    night_real: dict[str, list[str]] = {}
    night_real_stride: int = Field(30, ge=1)


class Config(_Opts):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    task: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    mode: Literal["paired", "cyclegan"] = "paired"
    seed: int = 0
    data: DataOptions
    model: ModelOptions = ModelOptions()
    loss: LossOptions = LossOptions()
    optim: OptimOptions = OptimOptions()
    train: TrainOptions = TrainOptions()
    export: ExportOptions = ExportOptions()
    eval: EvalOptions = EvalOptions()

    @model_validator(mode="after")
    def _consistent(self):
        if self.mode == "paired" and self.data.synth == "none":
            raise ValueError("mode 'paired' needs data.synth ('rain' or 'night') to make pairs")
        if self.mode == "cyclegan" and not self.data.train_b:
            raise ValueError("mode 'cyclegan' needs data.train_b (the target domain)")
        if self.train.warmup_steps and (self.mode != "cyclegan" or self.data.synth == "none"):
            raise ValueError("train.warmup_steps needs mode 'cyclegan' and a data.synth to make pairs")
        if self.loss.lambda_real_gan > 0 and (self.mode != "paired" or not self.data.train_real):
            raise ValueError("loss.lambda_real_gan > 0 needs mode 'paired' and data.train_real (real degraded frames)")
        if self.loss.lambda_distill > 0 and not (self.loss.teacher and self.loss.teacher_generator):
            raise ValueError("loss.lambda_distill > 0 needs loss.teacher and loss.teacher_generator")
        if self.export.policy in ("short_side", "source") and not self.export.short_side:
            raise ValueError(f"export.policy '{self.export.policy}' needs export.short_side")
        if self.export.policy == "source" and self.model.generator.kind == "unet":
            raise ValueError("export.policy 'source' needs a generator that takes any multiple of 4 (mobile or resnet)")
        return self

    def rooted(self) -> "Config":
        """Relative data paths are taken from the current folder, else from the repository root, where
        the shipped configs' ``../shared/data/...`` paths start (so ``streamgan-train eval`` works from
        any folder, not only from the repository root)."""
        def at(p):
            if p is None or Path(p).is_absolute() or Path(p).exists() or not (REPO / p).exists():
                return p
            return str(REPO / p)

        d, e, t, lo = self.data, self.eval, self.train, self.loss
        return self.model_copy(update={
            "data": d.model_copy(update={k: [at(p) for p in getattr(d, k)]
                                         for k in ("train_a", "train_b", "train_real", "holdout_a", "holdout_b")}),
            "eval": e.model_copy(update={"rain12": at(e.rain12), "real_clip": at(e.real_clip), "clip": at(e.clip),
                                         "paired_sets": {k: at(v) for k, v in e.paired_sets.items()},
                                         "night_real": {k: [at(p) for p in v] for k, v in e.night_real.items()},
                                         "real_rain": [at(p) for p in e.real_rain],
                                         "clean_hd": [at(p) for p in e.clean_hd]}),
            "train": t.model_copy(update={"init_generator": at(t.init_generator)}),
            "loss": lo.model_copy(update={"teacher": at(lo.teacher)})})

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> "Config":
        path = Path(path)
        raw = read_yaml_mapping(path, ConfigError, "config")
        for ov in overrides or []:
            key, _, val = ov.partition("=")
            if not _:
                raise ConfigError(f"override {ov!r}: expected key.path=value")
            node = raw
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = yaml.safe_load(val)
        try:
            return cls.model_validate(raw).rooted()
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<root>"
            more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
            raise ConfigError(f"config {path}: field '{field}': {first['msg']}{more}") from None
