"""The training loop: paired (pix2pix-style, pairs from a synthesiser) or unpaired (CycleGAN).

Runs on CPU, CUDA (mixed precision) and several processes through ``torchrun`` (DistributedDataParallel;
gloo on CPU, nccl on CUDA). Rank 0 writes checkpoints (temp file, then rename), sample grids, a CSV log and
a PNG plot of the losses. Checkpoints hold plain tensors and are read back with ``weights_only=True``.
A run holds a lock on its folder (a second trainer on it stops with the first one's pid), and a
single-process run stopped with SIGTERM or Ctrl-C ends after the step in progress with a checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from streamgan import locks

from . import losses as L
from .data import FramePool, from_model, list_sources, load_frames, looks_like_day, normalise_exposure, to_model
from .networks import MobileGenerator, build_discriminator, build_generator, init_weights
from .options import CheckpointError, Config, DataError
from .rain import rain_pair
from .lights import sky_mask
from .synth import night_pair

# data.synth -> the (input, target) pair maker
SYNTHS = {"rain": rain_pair, "night": night_pair}


CKPT = "latest.pt"
LOSS_KEYS = ["warmup_l1", "l1", "ssim", "struct", "G_gan", "real_gan", "cyc_A", "cyc_B", "idt", "distill", "G", "D"]


# ----------------------------------------------------------------------------------------- checkpoints
class RunInUse(CheckpointError):
    """Another training process is writing the same run folder."""


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``<out>/run.lock`` while a run writes ``out``: a second trainer on the same folder (say a resumed
    copy of a run that is still going) stops with the first one's pid instead of writing beside it. The lock
    goes with the process, however it ends."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    with locks.hold(fd, lambda holder: RunInUse(
            f"{out} is being written by another training process ({holder}): stop it first, or "
            "train into another train.out")):
        yield


@contextlib.contextmanager
def stop_on_signal(enabled: bool):
    """Yields a list that gets the signal's name when SIGTERM or SIGINT (Ctrl-C) arrives, so the loop can
    end after the step in progress and checkpoint; a second one acts as usual (stops at once). Only in the
    main thread of a single-process run: DDP ranks stopping at different steps would hang each other."""
    stop: list[str] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    sigs = (signal.SIGTERM, signal.SIGINT)
    old = {s: signal.getsignal(s) for s in sigs}

    def note(signum, _frame):
        stop.append(signal.Signals(signum).name)
        for s, h in old.items():
            signal.signal(s, h)

    for s in sigs:
        signal.signal(s, note)
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def arch_signature(cfg: Config) -> str:
    return json.dumps({"mode": cfg.mode, "model": cfg.model.model_dump(mode="json")}, sort_keys=True)


def same_arch(saved: str, cfg: Config) -> bool:
    """A checkpoint's architecture against the config's, options the checkpoint predates at their defaults."""
    from .options import ModelOptions

    try:
        s = json.loads(saved)
        return s.get("mode") == cfg.mode and ModelOptions(**s["model"]) == cfg.model
    except (ValueError, KeyError, TypeError):  # pydantic's ValidationError is a ValueError
        return False


def save_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad checkpoint
        raise CheckpointError(f"checkpoint {path} cannot be read safely (weights_only): {e}") from None
    if not isinstance(ck, dict) or "nets" not in ck or "arch" not in ck:
        raise CheckpointError(f"checkpoint {path} is not a streamgan-train checkpoint (no 'nets'/'arch')")
    return ck


def weights_from_onnx(path) -> dict:
    """A generator's state dict from an exported plugin (initializer names are parameter names; the
    source-resolution wrapper's ``net.`` prefix is dropped)."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # noqa: BLE001 - any parse problem is a bad file
        raise CheckpointError(f"cannot read ONNX weights from {path}: {e}") from None
    state = {}
    for i in graph.initializer:
        if i.name.startswith("onnx::"):
            continue
        name = i.name
        while name.startswith("net."):  # SourceResolution(net), Relit(net)
            name = name[4:]
        state[name] = torch.from_numpy(numpy_helper.to_array(i).copy())
    return state


def warm_start_state(net: nn.Module, state: dict) -> tuple[dict, list[str]]:
    """Fit another generator's weights to ``net`` for a warm start: a larger odd kernel is cut to its centre
    (a 7x7 output convolution into a 3x3 one) and residual blocks the source lacks altogether start as the
    identity (a deeper MobileGenerator without instance norm). Any other difference is left to
    :func:`load_net`'s architecture error."""
    own, fitted, notes = net.state_dict(), dict(state), []
    for k, v in own.items():
        w = state.get(k)
        if w is None or w.dim() != 4 or w.shape == v.shape or w.shape[:2] != v.shape[:2]:
            continue
        dh, dw = w.shape[2] - v.shape[2], w.shape[3] - v.shape[3]
        if dh >= 0 and dw >= 0 and dh % 2 == 0 and dw % 2 == 0:
            fitted[k] = w[:, :, dh // 2:dh // 2 + v.shape[2], dw // 2:dw // 2 + v.shape[3]].clone()
            notes.append(f"{k}: {w.shape[2]}x{w.shape[3]} kernel cut to its {v.shape[2]}x{v.shape[3]} centre")
    if isinstance(net, MobileGenerator):
        blocks = {int(k.split(".")[1]) for k in own if k.startswith("blocks.")}
        have = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
        new = sorted(i for i in blocks - have if net.blocks[i].can_be_identity())
        for i in new:
            prefix = f"blocks.{i}."
            fitted.update({k: v for k, v in net.blocks[i].identity_().state_dict(prefix=prefix).items()})
        if new:
            notes.append(f"residual blocks {new[0]}-{new[-1]} added as the identity")
    return fitted, notes


def load_net(net: nn.Module, state: dict, path, name: str, arch_saved: str, arch_now: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[:3]
        raise CheckpointError(
            f"checkpoint {path}: network '{name}' was made for another architecture "
            f"(checkpoint: {arch_saved}; config: {arch_now}): {' '.join(first)}"
        ) from None


def generator_state(path, net: str = "G") -> tuple[dict, dict | None, dict]:
    """(state dict, saved generator options or None, checkpoint) of a generator in a checkpoint, or in a
    plugin's ONNX file (its initializers: no architecture and no checkpoint)."""
    if str(path).endswith(".onnx"):
        return weights_from_onnx(path), None, {}
    ck = load_checkpoint(path)
    if net == "G" and "G_ema" in ck["nets"]:  # the run kept an average of G's weights (train.ema): that one
        net = "G_ema"
    return ck["nets"][net], json.loads(ck["arch"])["model"]["generator"], ck


def generator_from_checkpoint(path, gen_opts=None, net: str = "G") -> tuple[nn.Module, dict]:
    """Build the A->B generator described in a checkpoint and load its weights; from a plugin's ONNX file
    (its initializers), ``gen_opts`` gives the architecture."""
    from .options import GeneratorOptions

    state, saved, ck = generator_state(path, net)
    if saved is None and gen_opts is None:
        raise CheckpointError(f"{path}: an ONNX teacher needs its architecture (loss.teacher_generator)")
    opts = gen_opts or GeneratorOptions(**saved)
    g = build_generator(opts.kind, **opts.kwargs())
    described = f"the ONNX file {path}" if saved is None else json.dumps(saved)
    load_net(g, state, path, net, described, json.dumps(opts.model_dump(mode="json")))
    return g.eval(), ck


def warn_daylike(frames: list, files: list, field: str, show: bool = True) -> int:
    """Count night frames whose brightness looks like day (a bright sky); warn once with the count."""
    bad = [i for i, f in enumerate(frames) if looks_like_day(f)]
    if bad and show:
        names = ", ".join(str(files[i].name) for i in bad[:3] if i < len(files))
        print(f"streamgan-train: warning: {field}: {len(bad)} of {len(frames)} night frames look like day "
              f"(bright sky at the top){': ' + names if names else ''}{' ...' if len(bad) > 3 else ''}",
              file=sys.stderr)
    return len(bad)


# ----------------------------------------------------------------------------------------- models
class CycleGenerators(nn.Module):
    """Both CycleGAN generators in one module, so one forward feeds one backward (DDP-friendly)."""

    def __init__(self, g_ab: nn.Module, g_ba: nn.Module):
        super().__init__()
        self.G, self.F = g_ab, g_ba

    def forward(self, real_a, real_b, identity: bool):
        fake_b, fake_a = self.G(real_a), self.F(real_b)
        out = {"fake_B": fake_b, "fake_A": fake_a, "rec_A": self.F(fake_b), "rec_B": self.G(fake_a)}
        if identity:
            out["idt_B"], out["idt_A"] = self.G(real_b), self.F(real_a)
        return out


class Discriminators(nn.Module):
    """D_B judges domain B (outputs of G), D_A judges domain A (outputs of F; CycleGAN only)."""

    def __init__(self, d_b: nn.Module, d_a: nn.Module | None = None):
        super().__init__()
        self.D_B, self.D_A = d_b, d_a

    def forward(self, b, a=None):
        return self.D_B(b), (self.D_A(a) if a is not None else None)


def lr_lambda(cfg: Config):
    steps, warm = cfg.optim.steps, cfg.optim.warmup
    start = cfg.optim.decay_start if cfg.optim.decay_start is not None else steps // 2

    def f(step: int) -> float:
        ramp = min(1.0, (step + 1) / warm) if warm else 1.0  # Adam's first steps are full-size, whatever the gradient
        if step < start:
            return ramp
        return ramp * max(0.0, (steps - step) / max(1, steps - start))

    return f


# ----------------------------------------------------------------------------------------- logging
class Progress:
    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.start, self.enabled, self.t0 = total, start, enabled, time.time()
        self.tty = sys.stderr.isatty()

    def update(self, step: int, msg: str) -> None:
        if not self.enabled:
            return
        done = (step - self.start) / max(1, self.total - self.start)
        el = time.time() - self.t0
        eta = el / max(done, 1e-9) - el if done > 0 else float("nan")
        bar = "#" * int(30 * step / self.total) + "-" * (30 - int(30 * step / self.total))
        line = f"[{bar}] {step}/{self.total} {msg} eta {eta:6.0f}s"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)


def _prepare_csv(path: Path, fields: list[str], fresh: bool) -> None:
    """Start a new log, or keep the old rows (re-written under ``fields`` if the header differs)."""
    rows = []
    if path.exists() and not fresh:
        with open(path, newline="") as f:
            rd = csv.DictReader(f)
            if rd.fieldnames == fields:
                return
            if rd.fieldnames and rd.fieldnames[0].isdigit() and len(rd.fieldnames) == len(fields):
                f.seek(0)  # the header line was lost: the first line is a row of these fields
                rd = csv.DictReader(f, fieldnames=fields)
            rows = list(rd)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot_losses(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:  # rows without a step (a damaged log) are skipped
        rows = [r for r in csv.DictReader(f) if str(r.get("step") or "").isdigit()]
    if not rows:
        return
    keys = [k for k in rows[0] if k.startswith("loss_")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = [int(r["step"]) for r in rows]
    for k in keys:
        pts = [(st, float(r[k])) for st, r in zip(steps, rows) if r.get(k) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=k[5:])
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)


def save_grid(rows: list[torch.Tensor], path: Path) -> None:
    """rows: list of NCHW tensors in [0, 1]; each row one kind (input / output / target or cycle)."""
    import numpy as np
    from PIL import Image

    grid = torch.cat([torch.cat(list(r.clamp(0, 1)), dim=2) for r in rows], dim=1)
    arr = (grid.permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(arr).save(tmp)
    os.replace(tmp, path)


def make_pair(synth, d, clean: torch.Tensor, gen: torch.Generator):
    """(input, target) in [0, 1] from the synthesiser, or (clean, None) when there is none."""
    if synth is None:
        return clean, None
    inp, tgt = synth(clean, gen, **d.synth_options)
    if d.clean_fraction > 0:  # teach restraint: some inputs need no change at all
        keep = (torch.rand(clean.shape[0], generator=gen) < d.clean_fraction).view(-1, 1, 1, 1).to(clean.device)
        inp, tgt = torch.where(keep, clean, inp), torch.where(keep, clean, tgt)
    return inp, tgt


class SynthBatches(torch.utils.data.IterableDataset):
    """Endless synthetic (input, target) batches, made in DataLoader worker processes (``data.workers``),
    each worker with its own seeded generator and one thread."""

    def __init__(self, pool: FramePool, synth, d, seed: int):
        self.pool, self.synth, self.d, self.seed = pool, synth, d, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        if info is not None:  # Ctrl-C reaches the whole process group: the trainer decides when to stop
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(1)
        gen = torch.Generator().manual_seed(self.seed * 100 + wid)
        while True:
            yield make_pair(self.synth, self.d, self.pool.sample(self.d.batch_size, gen), gen)


# ----------------------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: Config, config_path: str = "", resume: bool = False, max_steps: int | None = None):
        self.cfg, self.config_path = cfg, config_path
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        want_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
        if cfg.train.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but CUDA is not available")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if want_cuda else "cpu")
        if want_cuda:
            torch.cuda.set_device(self.device)
        torch.set_num_threads(cfg.train.threads)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        self.out = Path(cfg.train.out)
        if self.rank == 0 and self.out.is_dir():  # refused now, not after minutes of loading frames
            with run_lock(self.out):  # (held again in run())
                pass
        self.max_steps = max_steps
        torch.manual_seed(cfg.seed)

        d = cfg.data
        held_a = set(list_sources(d.holdout_a, field="data.holdout_a")) if d.holdout_a else set()
        files_a = [f for f in list_sources(d.train_a, d.exclude, "data.train_a") if f not in held_a]
        if not files_a:
            raise DataError("data.train_a: every file is held out; nothing left to train on")
        self.pool_a = FramePool(load_frames(files_a, d.max_side, d.video_stride), d.crop, d.scale)
        self.pool_b = None
        if d.train_b:  # cyclegan: domain B; paired: real target-domain frames the discriminator takes as real
            held_b = set(list_sources(d.holdout_b, field="data.holdout_b")) if d.holdout_b else set()
            files_b = [f for f in list_sources(d.train_b, d.exclude, "data.train_b") if f not in held_b]
            if not files_b:
                raise DataError("data.train_b: every file is held out; nothing left to train on")
            frames_b = load_frames(files_b, d.max_side, d.video_stride)
            if cfg.task == "day2night":
                warn_daylike(frames_b, files_b, "data.train_b", self.rank == 0)
            if d.normalise_b:
                frames_b = [normalise_exposure(f, d.normalise_b) for f in frames_b]
            self.pool_b = FramePool(frames_b, d.crop, d.scale)
        self.pool_real = None
        if d.train_real:
            files_r = list_sources(d.train_real, d.exclude, "data.train_real")
            self.pool_real = FramePool(load_frames(files_r, d.max_side, d.video_stride), d.crop, d.scale)
        self.counts = {"train_a": len(self.pool_a), "train_b": len(self.pool_b) if self.pool_b else 0,
                       "train_real": len(self.pool_real) if self.pool_real else 0}
        self.synth = SYNTHS.get(d.synth)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)

        g = cfg.model.generator
        self.G = build_generator(g.kind, **g.kwargs())
        init_weights(self.G)
        nets = {"G": self.G}
        if cfg.mode == "cyclegan":
            self.F = build_generator(g.kind, **g.kwargs())
            init_weights(self.F)
            nets["F"] = self.F
        dd = cfg.model.discriminator
        self.use_gan = cfg.loss.lambda_gan > 0 or cfg.loss.lambda_real_gan > 0
        if self.use_gan:
            nets["D_B"] = build_discriminator(dd.ndf, dd.n_layers, dd.norm)
            if cfg.mode == "cyclegan":
                nets["D_A"] = build_discriminator(dd.ndf, dd.n_layers, dd.norm)
            for k in ("D_B", "D_A"):
                if k in nets:
                    init_weights(nets[k])
        self.nets = nets
        for n in nets.values():
            n.to(self.device)
        self.gens = CycleGenerators(self.G, self.F) if cfg.mode == "cyclegan" else self.G
        self.discs = Discriminators(nets["D_B"], nets.get("D_A")) if self.use_gan else None
        self.teacher = None
        if cfg.loss.lambda_distill > 0:
            self.teacher, _ = generator_from_checkpoint(cfg.loss.teacher, cfg.loss.teacher_generator)
            self.teacher.to(self.device).requires_grad_(False)

        self.opt_g = torch.optim.Adam(self.gens.parameters(), cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
        self.opt_d = (torch.optim.Adam(self.discs.parameters(), cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
                      if self.use_gan else None)
        self.sched = [torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(cfg)) for o in (self.opt_g, self.opt_d) if o]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.gan_loss = L.GANLoss(cfg.loss.gan_mode)
        self.pool_fb = L.ImagePool(cfg.optim.pool_size, cfg.seed)
        self.pool_fa = L.ImagePool(cfg.optim.pool_size, cfg.seed + 1)
        self.step, self.wall = 0, 0.0

        if cfg.train.init_generator and not resume:
            src = cfg.train.init_generator
            now = json.dumps(g.model_dump(mode="json"), sort_keys=True)
            state, saved, _ = generator_state(src)  # a shipped plugin: its weights are the ONNX initializers
            saved = f"the ONNX file {src}" if saved is None else json.dumps(saved, sort_keys=True)
            state, notes = warm_start_state(self.G, state)
            load_net(self.G, state, src, "G", saved, now)
            if notes and self.rank == 0:
                print(f"streamgan-train: warm start from {src}: {'; '.join(notes)}", file=sys.stderr)
        self.G_ema = None
        if cfg.train.ema:  # starts from G's first weights (the warm start's, when there is one)
            self.G_ema = self.nets["G_ema"] = copy.deepcopy(self.G).requires_grad_(False)
        if resume:
            self._resume()
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.gens = DDP(self.gens, device_ids=ids)
            if self.discs is not None:
                self.discs = DDP(self.discs, device_ids=ids)
        # a fixed batch for the sample grids
        vis_gen = torch.Generator().manual_seed(12345)
        vis_a = self.pool_a.sample(4, vis_gen)  # synthesised on the CPU, as the training batches are
        self.vis_a = vis_a.to(self.device)
        self.vis_b = self.pool_b.sample(4, vis_gen).to(self.device) if self.pool_b else None
        self.vis_pair = tuple(None if t is None else t.to(self.device) for t in self._pair(vis_a, vis_gen))
        self.vis_real = self.pool_real.sample(4, vis_gen).to(self.device) if self.pool_real else None
        self.feeder = None
        if d.workers and self.synth is not None:
            seed = cfg.seed * 1000 + self.rank + 7919 * self.step  # a resumed run draws new pairs
            self.feeder = iter(torch.utils.data.DataLoader(
                SynthBatches(self.pool_a, self.synth, d, seed), batch_size=None, num_workers=d.workers,
                prefetch_factor=4, multiprocessing_context="spawn"))  # no fork of a threaded process

    # -- data
    def _pair(self, clean: torch.Tensor, gen: torch.Generator):
        return make_pair(self.synth, self.cfg.data, clean, gen)

    def _batch(self):
        bs = self.cfg.data.batch_size
        if self.feeder is not None:
            inp, tgt = next(self.feeder)
        else:
            inp, tgt = self._pair(self.pool_a.sample(bs, self.gen), self.gen)
        lo = self.cfg.loss
        gan = self.cfg.mode == "cyclegan" or (lo.lambda_gan > 0 and self.step >= lo.gan_start)
        b = self.pool_b.sample(bs, self.gen) if self.pool_b and gan else None
        if self.real_on():
            b = self.pool_real.sample(bs, self.gen)  # paired mode: real degraded frames, no clean pair
        mv = lambda t: None if t is None else to_model(t).to(self.device)  # noqa: E731
        return mv(inp), mv(tgt), mv(b)

    def real_on(self) -> bool:
        lo = self.cfg.loss
        return self.pool_real is not None and lo.lambda_real_gan > 0 and self.step >= lo.real_gan_start

    # -- checkpoints
    def payload(self) -> dict:
        return {
            "step": self.step, "wall_time_s": self.wall, "arch": arch_signature(self.cfg), "world_size": self.world,
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optims": {"G": self.opt_g.state_dict(), **({"D": self.opt_d.state_dict()} if self.opt_d else {})},
            "scheds": [s.state_dict() for s in self.sched],
            "scaler": self.scaler.state_dict(), "rng": self.gen.get_state(), "counts": self.counts,
            "run": self.run_settings(),
        }

    def run_settings(self) -> dict:
        """How these weights were trained, for the card: the export reads it from the checkpoint, since the
        run may have set values (``--set``) that the config file given to the export does not hold."""
        d = self.cfg.data
        return {"device": self.device.type, "crop": d.crop, "batch_size": d.batch_size,
                "synth_options": dict(d.synth_options), "lr": self.cfg.optim.lr,
                **({"ema": self.cfg.train.ema} if self.cfg.train.ema else {})}

    def _resume(self) -> None:
        path = self.out / CKPT
        if not path.exists():
            raise CheckpointError(f"--resume: no checkpoint at {path} (train.out in {self.config_path})")
        ck = load_checkpoint(path)
        arch = arch_signature(self.cfg)
        if not same_arch(ck["arch"], self.cfg):
            raise CheckpointError(f"checkpoint {path} was made for another architecture "
                                  f"(checkpoint: {ck['arch']}; config {self.config_path}: {arch})")
        for k, net in self.nets.items():
            if k == "G_ema" and k not in ck["nets"]:  # the average starts now, from the resumed weights
                net.load_state_dict(ck["nets"]["G"])
                continue
            if k not in ck["nets"]:
                raise CheckpointError(f"checkpoint {path} has no network '{k}'")
            load_net(net, ck["nets"][k], path, k, ck["arch"], arch)
        self.opt_g.load_state_dict(ck["optims"]["G"])
        if self.opt_d is not None and "D" in ck["optims"]:
            self.opt_d.load_state_dict(ck["optims"]["D"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.gen.set_state(ck["rng"])
        if self.world > 1:  # different ranks draw different batches
            self.gen.manual_seed(int(torch.randint(2**31, (), generator=self.gen)) + self.rank)
        self.step, self.wall = int(ck["step"]), float(ck["wall_time_s"])
        for s, st in zip(self.sched, ck.get("scheds", [])):
            s.load_state_dict(st)

    # -- one iteration
    def _l1_weight(self, inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor | None:
        lo = self.cfg.loss
        if not (lo.l1_light_weight or lo.l1_sky_weight or lo.l1_rain_weight):
            return None
        sky = sky_mask((inp.float() + 1) / 2) if lo.l1_sky_weight else None
        return L.l1_emphasis(tgt.float(), sky, lo.l1_light_weight, lo.l1_sky_weight, inp.float(), lo.l1_rain_weight)

    def train_step(self) -> dict[str, float]:
        cfg, lo = self.cfg, self.cfg.loss
        inp, tgt, real_b = self._batch()
        ac = torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)
        logs = {}
        if cfg.mode == "cyclegan" and self.step < cfg.train.warmup_steps:
            return self._warmup_step(inp, tgt)
        with ac:
            if cfg.mode == "paired":
                fake = self.gens(inp)
                loss_g = torch.zeros((), device=self.device)
                if lo.lambda_l1:
                    logs["l1"] = L.paired_l1(fake, tgt, self._l1_weight(inp, tgt))
                    loss_g = loss_g + lo.lambda_l1 * logs["l1"]
                if lo.lambda_ssim:
                    logs["ssim"] = L.ssim_loss(fake.float(), tgt.float())
                    loss_g = loss_g + lo.lambda_ssim * logs["ssim"]
                gan_on = lo.lambda_gan > 0 and self.step >= lo.gan_start
                if gan_on:
                    pred, _ = self.discs(fake)
                    logs["G_gan"] = self.gan_loss(pred, True, for_discriminator=False)
                    loss_g = loss_g + lo.lambda_gan * logs["G_gan"]
                fake_b, fake_a, real_a = fake, None, inp
                real_target = tgt if real_b is None or self.pool_real is not None else real_b
                d_fake = fake
                if real_b is not None and self.pool_real is not None:  # outputs on real rain should look like real clear frames
                    d_fake = self.gens(real_b)
                    pred, _ = self.discs(d_fake)
                    logs["real_gan"] = self.gan_loss(pred, True, for_discriminator=False)
                    loss_g = loss_g + lo.lambda_real_gan * logs["real_gan"]
            else:
                real_a = inp
                ident = lo.lambda_identity > 0
                o = self.gens(real_a, real_b, ident)
                fake_b, fake_a = o["fake_B"], o["fake_A"]
                logs["cyc_A"] = L.cycle_loss(o["rec_A"], real_a)
                logs["cyc_B"] = L.cycle_loss(o["rec_B"], real_b)
                loss_g = lo.lambda_cycle * (logs["cyc_A"] + logs["cyc_B"])
                if ident:
                    logs["idt"] = L.identity_loss(o["idt_B"], real_b) + L.identity_loss(o["idt_A"], real_a)
                    loss_g = loss_g + lo.lambda_cycle * lo.lambda_identity * logs["idt"]
                if self.use_gan:
                    pb, pa = self.discs(fake_b, fake_a)
                    logs["G_gan"] = self.gan_loss(pb, True, False) + self.gan_loss(pa, True, False)
                    loss_g = loss_g + lo.lambda_gan * logs["G_gan"]
                if lo.lambda_l1 and tgt is not None:
                    logs["l1"] = L.paired_l1(fake_b, tgt)
                    loss_g = loss_g + lo.lambda_l1 * logs["l1"]
                real_target, d_fake = real_b, fake_b
            if lo.lambda_struct:
                where = 1 - sky_mask((real_a.float() + 1) / 2, L.STRUCT_REACH) if lo.struct_off_sky else None
                logs["struct"] = L.structure_loss(fake_b.float(), real_a.float(), where)
                loss_g = loss_g + lo.lambda_struct * logs["struct"]
            if self.teacher is not None:
                with torch.no_grad():
                    t_out = self.teacher(real_a)
                logs["distill"] = L.distill_loss(fake_b, t_out)
                loss_g = loss_g + lo.lambda_distill * logs["distill"]
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        logs["G"] = loss_g

        if self.use_gan and (cfg.mode != "paired" or gan_on or real_b is not None):
            self.opt_d.zero_grad(set_to_none=True)
            with ac:
                fb = self.pool_fb.query(d_fake)
                n = fb.shape[0]
                if cfg.mode == "paired":
                    pred, _ = self.discs(torch.cat([real_target, fb]))
                    loss_d = 0.5 * (self.gan_loss(pred[:n], True) + self.gan_loss(pred[n:], False))
                else:
                    fa = self.pool_fa.query(fake_a)
                    pb, pa = self.discs(torch.cat([real_target, fb]), torch.cat([real_a, fa]))
                    loss_d = 0.5 * (self.gan_loss(pb[:n], True) + self.gan_loss(pb[n:], False)
                                    + self.gan_loss(pa[:n], True) + self.gan_loss(pa[n:], False))
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            logs["D"] = loss_d
        self.scaler.update()
        self._update_ema()
        self._advance_schedules(d_stepped="D" in logs)
        self.step += 1
        return {k: float(v.detach()) for k, v in logs.items()}

    def _warmup_step(self, inp, tgt) -> dict[str, float]:
        """Supervised warm start of G on synthesiser pairs (before the CycleGAN objective takes over)."""
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            fake = self.G(inp)
            l1 = L.paired_l1(fake, tgt)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(l1).backward()
        if self.world > 1:  # G is called outside its DDP wrapper here: average the gradients by hand
            for p in self.G.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self._update_ema()
        self._advance_schedules(d_stepped=False)
        self.step += 1
        return {"warmup_l1": float(l1.detach())}

    @torch.no_grad()
    def _update_ema(self) -> None:
        """G_ema <- decay * G_ema + (1 - decay) * G, after each step of G (buffers copied as they are)."""
        if self.G_ema is None:
            return
        for e, p in zip(self.G_ema.parameters(), self.G.parameters()):
            e.lerp_(p.detach(), 1 - self.cfg.train.ema)
        for e, b in zip(self.G_ema.buffers(), self.G.buffers()):
            e.copy_(b)

    def _advance_schedules(self, d_stepped: bool) -> None:
        """One step of every learning-rate schedule; D's is kept in step by count when D was not
        updated (before the GAN term starts), which ``scheduler.step()`` would warn about."""
        self.sched[0].step()
        if len(self.sched) > 1:
            if d_stepped:
                self.sched[1].step()
            else:
                self.sched[1].last_epoch += 1

    # -- outputs
    @torch.no_grad()
    def write_samples(self) -> Path:
        self.G.eval()
        inp, tgt = self.vis_pair
        out = from_model(self.G(to_model(inp)))
        rows = [inp, out]
        if tgt is not None:
            rows.append(tgt)
        if self.cfg.mode == "cyclegan":
            rows.append(from_model(self.F(to_model(out))))  # cycle
        if self.vis_real is not None:  # real degraded frames (no target) and what G makes of them
            rows += [self.vis_real, from_model(self.G(to_model(self.vis_real)))]
        self.G.train()
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        save_grid(rows, path)
        return path

    def checkpoint(self) -> None:
        save_checkpoint(self.out / CKPT, self.payload())

    def params_in_sync(self) -> bool:
        """DDP check: every rank holds the same generator weights (sum of parameters, all-gathered)."""
        if self.world == 1:
            return True
        s = torch.stack([p.detach().double().sum() for p in self.G.parameters()]).sum().view(1).to(self.device)
        gathered = [torch.zeros_like(s) for _ in range(self.world)]
        dist.all_gather(gathered, s)
        return all(torch.allclose(gathered[0], g, rtol=0, atol=1e-9) for g in gathered)

    def run(self) -> dict:
        """Train to ``optim.steps`` (or ``max_steps`` more), checkpointing every ``checkpoint_every_s``; the
        summary says ``stopped_by`` when a signal ended the run early (its checkpoint is written)."""
        main = self.rank == 0
        with run_lock(self.out) if main else contextlib.nullcontext(), stop_on_signal(self.world == 1) as stop:
            return self._run(main, stop)

    def _run(self, main: bool, stop: list[str]) -> dict:
        cfg = self.cfg
        total = cfg.optim.steps if self.max_steps is None else min(cfg.optim.steps, self.step + self.max_steps)
        if main:
            (self.out / "config.json").write_text(cfg.model_dump_json(indent=2))
        csv_path = self.out / "log.csv"
        fields = None
        prog = Progress(total, self.step, cfg.train.progress and main)
        last_ck = time.time()
        acc: dict[str, list[float]] = {}
        t_prev = time.time()
        while self.step < total and not stop:
            logs = self.train_step()
            now = time.time()
            self.wall += now - t_prev
            t_prev = now
            for k, v in logs.items():
                acc.setdefault(k, []).append(v)
            if not all(math.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"non-finite loss at step {self.step}: {logs}")
            if main and (self.step % cfg.train.log_every == 0 or self.step == total):
                row = {"step": self.step, "wall_time_s": round(self.wall, 2),
                       "lr": self.opt_g.param_groups[0]["lr"],
                       **{f"loss_{k}": sum(v) / len(v) for k, v in acc.items()}}
                acc = {}
                if fields is None:
                    fields = ["step", "wall_time_s", "lr"] + [f"loss_{k}" for k in LOSS_KEYS]
                    _prepare_csv(csv_path, fields, fresh=self.step <= cfg.train.log_every)
                with open(csv_path, "a", newline="") as f:
                    csv.DictWriter(f, fields, extrasaction="ignore").writerow(row)
                prog.update(self.step, " ".join(f"{k[5:]}={v:.4f}" for k, v in row.items() if k.startswith("loss_")))
            if main and self.step % cfg.train.sample_every == 0:
                self.write_samples()
            if main and time.time() - last_ck > cfg.train.checkpoint_every_s:
                self.checkpoint()
                if csv_path.exists():  # a checkpoint can come before the first log row
                    plot_losses(csv_path, self.out / "losses.png")
                last_ck = time.time()
        self.feeder = None  # the synthesis workers stop here, not at interpreter exit
        synced = self.params_in_sync()
        summary = {"step": self.step, "wall_time_s": round(self.wall, 1), "world_size": self.world,
                   "params_in_sync": synced, "counts": self.counts, "config": self.config_path}
        if stop:
            summary["stopped_by"] = stop[0]
        if main:
            self.checkpoint()
            self.write_samples()
            if csv_path.exists():
                plot_losses(csv_path, self.out / "losses.png")
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
            if prog.tty and prog.enabled:
                print(file=sys.stderr)
        if self.world > 1:
            dist.barrier()
        return summary
