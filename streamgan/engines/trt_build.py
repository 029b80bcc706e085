"""TensorRT engines: optimisation profiles, the on-disk cache, building, and ``streamgan compile``.

An engine is only valid for the ONNX file, TensorRT version and GPU it was built with, so every
engine in the cache sits beside a JSON sidecar holding its key::

    onnx_sha256, tensorrt_version, gpu_name, compute_capability, precision, profile

and the sha256 of the engine bytes. The file name is derived from a hash of the key, and the
sidecar is checked again before every load: an engine whose sidecar is missing, unreadable, or
names another ONNX / TensorRT version / GPU / precision / profile, or whose bytes changed, is
rebuilt, never deserialised. Engines are written to a temporary name and renamed, sidecar last,
so an interrupted build leaves nothing that looks valid.

Nothing here imports ``tensorrt`` or ``torch`` at module level: the cache logic, the profile
computation and the operator check run (and are tested) on machines without a GPU.

API used (TensorRT 10.x Python): ``Builder``, ``Builder.create_network(0)`` (networks are always
explicit-batch in 10.x), ``OnnxParser.parse_from_file``/``num_errors``/``get_error``,
``Builder.create_builder_config``, ``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE)``,
``IBuilderConfig.set_flag(BuilderFlag.FP16)``, ``Builder.create_optimization_profile``,
``IOptimizationProfile.set_shape(name, min, opt, max)``, ``IBuilderConfig.add_optimization_profile``,
``IBuilderConfig.create_timing_cache``/``set_timing_cache``/``get_timing_cache``,
``ITimingCache.serialize`` and ``Builder.build_serialized_network``.

Only TensorRT 10.x is supported (``SUPPORTED_TRT_MAJOR``): TensorRT 11 removed ``BuilderFlag.FP16``
(networks are strongly typed there, fp16 comes from an fp16 ONNX), so a build with 11.x would
fail inside the bindings. ``_trt()`` checks the version when the backend starts and says so in one
line (exit 6); the ``tensorrt`` extra pins ``tensorrt>=10,<11``.

Profiles follow the card's processing policy (``policy_profile``): a model run at short side 360
sees 640x360 (16:9), 480x360 (4:3), 360x640 (portrait) and everything up to 21:9 either way, so
the default profile spans all of them and is tuned for the 16:9 size the model really runs at.
Shapes a stream needs beyond it are built before the stream starts (``Backend.prepare``); a
timing cache beside the engines makes such builds much faster than the first one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BackendError, ModelError, UsageError

log = logging.getLogger("streamgan")

SIDECAR_VERSION = 1
SUPPORTED_TRT_MAJOR = 10
TRT_PRECISIONS = ("fp16", "fp32")
DEFAULT_BATCH = (1, 8)
DEFAULT_RESOLUTIONS = "360p..1080p"
DEFAULT_WORKSPACE_GIB = 4.0

# Operators the TensorRT ONNX parser imports, from onnx/onnx-tensorrt docs/operators.md (the
# support matrix shipped with TensorRT 8.5, opset 17, "Supported: Y" rows) plus the operators its
# docs/Changelog.md lists as added since: GroupNormalization, LayerNormalization, IsInf (8.6),
# Hardmax (9.2), DeformConv (10.1), BlackmanWindow/HammingWindow/HannWindow (10.4), STFT (10.5).
# Restrictions noted there that matter for generators: Conv/ConvTranspose 2D or 3D with weights as
# initializers; InstanceNormalization scale/bias as initializers; Resize modes nearest/linear only.
TRT_SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample GRU HardSwish HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN
RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
GroupNormalization LayerNormalization IsInf Hardmax DeformConv
BlackmanWindow HammingWindow HannWindow STFT
""".split())

# Named resolutions (16:9 width x height) for --resolutions.
NAMED_RESOLUTIONS = {
    "240p": (426, 240), "360p": (640, 360), "480p": (854, 480), "540p": (960, 540),
    "720p": (1280, 720), "1080p": (1920, 1080), "1440p": (2560, 1440), "2160p": (3840, 2160),
    "4k": (3840, 2160),
}
_DEFAULT_OPT = (1280, 720)
# aspect ratios the policy profile serves without a rebuild: up to 21:9 landscape and 9:21 portrait
POLICY_MAX_ASPECT = 21 / 9


# -- operator check ---------------------------------------------------------------------------

def onnx_operators(onnx_path: str | Path) -> set[str]:
    """The set of operator types in an ONNX graph (including nested subgraphs), 'domain::Op' for
    operators outside the default ONNX domain. Needs the ``onnx`` package."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"cannot read ONNX {onnx_path}: {e}") from None
    ops: set[str] = set()

    def walk(graph):
        for node in graph.node:
            ops.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return ops


def unsupported_operators(onnx_path: str | Path) -> list[str] | None:
    """Operators of ``onnx_path`` outside ``TRT_SUPPORTED_OPS``; None when ``onnx`` is missing
    (the TensorRT parser then reports them itself)."""
    try:
        ops = onnx_operators(onnx_path)
    except ImportError:
        return None
    return sorted(ops - TRT_SUPPORTED_OPS)


def io_names(onnx_path) -> tuple[list[str], list[str]]:
    """The graph's input and output names in order (the image first; a temporal model's state after
    it), read with OpenVINO's ONNX reader."""
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    return [i.any_name for i in model.inputs], [o.any_name for o in model.outputs]


def extra_inputs(onnx_path) -> list[str]:
    """Graph inputs beside the image (a temporal model's state)."""
    return io_names(onnx_path)[0][1:]


def state_scales(onnx_path: Path) -> dict[str, int]:
    """Each state input's scale (its size is the network's over it) from the card beside ``onnx_path``;
    none without a card (every state at the network's size)."""
    card = Path(onnx_path).parent / "card.yaml"
    if not card.is_file():
        return {}
    from ..card import ModelCard

    temporal = ModelCard.load(card).temporal
    return {s.input: s.scale for s in temporal.state} if temporal else {}


def state_shapes(profile: "Profile", channels: int, processing, scale: int = 1) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of a temporal model's state input for images within ``profile``: the state
    has the size the model's network runs at over ``scale`` (``streamgan.temporal.state_size``). That size grows or
    shrinks with each side only where the short side crosses the card's short side or the other side,
    so its extremes lie on the profile's edges and those lines."""
    from ..temporal import state_size as sized

    def state_size(w, h, processing):
        return (w // scale, h // scale) if processing is None else sized(w, h, processing, scale)

    def points(r, other):
        side = getattr(processing, "short_side", None) or r[0]
        return sorted({v for v in (r[0], r[2], side, *other) if r[0] <= v <= r[2]})

    sizes = [state_size(w, h, processing) for h in points(profile.height, (profile.width[0], profile.width[2]))
             for w in points(profile.width, (profile.height[0], profile.height[2]))]
    lo = (profile.batch[0], channels, min(h for _, h in sizes), min(w for w, _ in sizes))
    hi = (profile.batch[2], channels, max(h for _, h in sizes), max(w for w, _ in sizes))
    ow, oh = state_size(profile.width[1], profile.height[1], processing)
    return lo, (profile.batch[1], channels, oh, ow), hi


# -- profiles ---------------------------------------------------------------------------------

def _round_up(v: int, m: int) -> int:
    return -(-int(v) // m) * m


@dataclass(frozen=True)
class Profile:
    """One optimisation profile for an NCHW input: (min, opt, max) per dynamic dimension."""

    batch: tuple[int, int, int]
    height: tuple[int, int, int]
    width: tuple[int, int, int]

    def shapes(self, channels: int = 3) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((self.batch[i], channels, self.height[i], self.width[i]) for i in range(3))

    def covers(self, n: int, h: int, w: int) -> bool:
        return (self.batch[0] <= n <= self.batch[2] and self.height[0] <= h <= self.height[2]
                and self.width[0] <= w <= self.width[2])

    def union(self, n: int, h: int, w: int) -> "Profile":
        """This profile widened to include an (n, h, w) input; opt unchanged where still inside."""
        def grow(r, v):
            lo, hi = min(r[0], v), max(r[2], v)
            return (lo, min(max(r[1], lo), hi), hi)
        return Profile(grow(self.batch, n), grow(self.height, h), grow(self.width, w))

    def describe(self) -> str:
        b, h, w = self.batch, self.height, self.width
        return (f"batch {b[0]}..{b[2]} (opt {b[1]}), {w[0]}x{h[0]}..{w[2]}x{h[2]} "
                f"(opt {w[1]}x{h[1]})")

    def to_json(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "Profile":
        return cls(*(tuple(int(x) for x in d[k]) for k in ("batch", "height", "width")))


def parse_resolution(text: str) -> tuple[int, int]:
    """'720p' | '1280x720' -> (width, height)."""
    t = text.strip().lower()
    if t in NAMED_RESOLUTIONS:
        return NAMED_RESOLUTIONS[t]
    m = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", t)
    if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
        return int(m.group(1)), int(m.group(2))
    raise UsageError(f"resolution '{text}' is not understood: use WIDTHxHEIGHT (1280x720) or one of "
                     + ", ".join(NAMED_RESOLUTIONS))


def parse_resolutions(text: str) -> list[tuple[int, int]]:
    """'360p..1080p' (a range) or '720p,1280x720' (a list) -> [(w, h), ...]."""
    if ".." in text:
        lo, _, hi = text.partition("..")
        return [parse_resolution(lo), parse_resolution(hi)]
    out = [parse_resolution(p) for p in text.split(",") if p.strip()]
    if not out:
        raise UsageError("no resolution given")
    return out


def parse_batch_range(text: str | int | tuple) -> tuple[int, int]:
    """'1..8' -> (1, 8); '8' -> (1, 8)."""
    if isinstance(text, (tuple, list)):
        lo, hi = int(text[0]), int(text[-1])
    elif isinstance(text, int) or ".." not in str(text):
        try:
            lo, hi = 1, int(text)
        except ValueError:
            raise UsageError(f"batch '{text}' is not understood: use N or MIN..MAX (1..8)") from None
    else:
        a, _, b = str(text).partition("..")
        try:
            lo, hi = int(a), int(b)
        except ValueError:
            raise UsageError(f"batch '{text}' is not understood: use N or MIN..MAX (1..8)") from None
    if not 1 <= lo <= hi:
        raise UsageError(f"batch range {lo}..{hi} is invalid: need 1 <= MIN <= MAX")
    return lo, hi


def compute_profile(batch_range=DEFAULT_BATCH, resolutions=DEFAULT_RESOLUTIONS, *,
                    height_range: tuple[int, int] | None = None,
                    width_range: tuple[int, int] | None = None, size_multiple: int = 4,
                    opt_batch: int | None = None, opt_resolution=None) -> Profile:
    """The profile covering a batch range and a resolution range.

    Resolutions are a string ('360p..1080p', '720p,1080p', '1280x720') or a list of (w, h); the
    smallest and largest width and height bound the profile, or give ``height_range`` and
    ``width_range`` directly. Every bound is rounded *up* to ``size_multiple``, since frames are
    padded up to the model's multiple before they reach the engine (``frames.pad_to_multiple``).
    Opt: the largest batch (the pipeline runs full batches) and 1280x720 clamped into the range,
    unless ``opt_batch`` / ``opt_resolution`` say otherwise.
    """
    if size_multiple < 1:
        raise UsageError(f"size multiple must be >= 1, got {size_multiple}")
    b_lo, b_hi = parse_batch_range(batch_range)
    if height_range is None or width_range is None:
        res = parse_resolutions(resolutions) if isinstance(resolutions, str) else list(resolutions)
        if not res:
            raise UsageError("no resolution given")
        ws, hs = [int(r[0]) for r in res], [int(r[1]) for r in res]
        width_range = width_range or (min(ws), max(ws))
        height_range = height_range or (min(hs), max(hs))
    for name, (lo, hi) in (("height", height_range), ("width", width_range)):
        if not 1 <= lo <= hi:
            raise UsageError(f"{name} range {lo}..{hi} is invalid: need 1 <= MIN <= MAX")
    if opt_resolution is None:
        opt_w, opt_h = _DEFAULT_OPT
    else:
        opt_w, opt_h = parse_resolution(opt_resolution) if isinstance(opt_resolution, str) else opt_resolution
    ob = b_hi if opt_batch is None else int(opt_batch)

    def rng(lo, hi, opt):
        lo, hi = _round_up(lo, size_multiple), _round_up(hi, size_multiple)
        return lo, min(max(_round_up(opt, size_multiple), lo), hi), hi

    return Profile((b_lo, min(max(ob, b_lo), b_hi), b_hi), rng(*height_range, opt_h), rng(*width_range, opt_w))


def policy_profile(processing=None, batch_range=DEFAULT_BATCH, *, size_multiple: int | None = None,
                   short_side: int | None = None) -> Profile:
    """The default profile for a model, from its card's processing policy.

    ``processing`` is a card's ``Processing`` (policy, short_side, size_multiple) or None.
    Short-side policy S (or an explicit ``short_side``, the CLI's ``--size``): frames larger than
    S run at short side S, landscape (16:9 640x360, 4:3 480x360, up to 21:9) or portrait (360x640
    ...), smaller ones at their own size; the profile spans S/2 .. S x 21/9 in both dimensions and
    is tuned for the 16:9 landscape size at S. Native policy: 360p..1080p landscape tuned for
    1280x720, as ``compute_profile``'s defaults. Bounds are rounded up to the size multiple.
    """
    multiple = size_multiple or (processing.size_multiple if processing is not None else 4)
    side = short_side
    if side is None and processing is not None and processing.policy == "short_side":
        side = processing.short_side
    if side is None and processing is not None and processing.policy == "source":
        # the engine takes source frames (the graph scales to short_side itself): from half the card's
        # size up to 1080p, landscape or portrait, tuned for 1280x720
        lo = max(1, processing.short_side // 2)
        return compute_profile(batch_range, height_range=(lo, 1920), width_range=(lo, 1920),
                               size_multiple=multiple, opt_resolution=(1280, 720))
    if side is None:
        return compute_profile(batch_range, DEFAULT_RESOLUTIONS, size_multiple=multiple)
    lo, hi = max(1, side // 2), math.ceil(side * POLICY_MAX_ASPECT)
    opt = (int(round(side * 16 / 9)), side)
    return compute_profile(batch_range, height_range=(lo, hi), width_range=(lo, hi),
                           size_multiple=multiple, opt_resolution=opt)


# -- cache keys and sidecars ------------------------------------------------------------------

def engine_key(onnx_sha256: str, tensorrt_version: str, gpu_name: str, compute_capability: str,
               precision: str, profile: Profile) -> dict:
    """Everything an engine depends on. Two engines are interchangeable iff their keys are equal."""
    return {
        "onnx_sha256": onnx_sha256,
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": str(gpu_name),
        "compute_capability": str(compute_capability),
        "precision": precision,
        "profile": profile.to_json(),
    }


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def engine_path_for(cache_dir: str | Path, onnx_path: str | Path, key: dict) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(onnx_path).stem) or "model"
    return Path(cache_dir) / f"{stem}-{key['precision']}-{key_digest(key)}.engine"


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


_FIELD_NAMES = {
    "onnx_sha256": "another ONNX file",
    "tensorrt_version": "TensorRT",
    "gpu_name": "GPU",
    "compute_capability": "compute capability",
    "precision": "precision",
    "profile": "profile",
}


def check_engine(engine_path: str | Path, key: dict) -> str | None:
    """None when ``engine_path`` may be loaded for ``key``; else why it must be rebuilt."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return "no cached engine"
    side = sidecar_path(engine_path)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        return f"{engine_path.name} has no sidecar {side.name} (origin unknown)"
    except (OSError, ValueError) as e:
        return f"sidecar {side.name} is unreadable ({e})"
    if not isinstance(meta, dict) or not isinstance(meta.get("key"), dict):
        return f"sidecar {side.name} is malformed"
    built = meta["key"]
    for field, label in _FIELD_NAMES.items():
        if built.get(field) != key[field]:
            if field == "onnx_sha256":
                return "engine was built from another ONNX file (sha256 differs)"
            if field == "profile":
                return "engine was built for another profile"
            return f"engine was built for {label} {built.get(field)!r}, this is {key[field]!r}"
    if meta.get("engine_sha256") != _sha256_file(engine_path):
        return f"{engine_path.name} does not match its sidecar (changed or truncated)"
    return None


def write_engine(engine_path: str | Path, data: bytes, key: dict, extra: dict | None = None) -> None:
    """Write engine bytes, then the sidecar, each atomically (temp file + rename)."""
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(engine_path)
    side.unlink(missing_ok=True)  # an engine without a valid sidecar is never loaded
    tmp = engine_path.with_name(f".{engine_path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(engine_path)
    meta = {"sidecar_version": SIDECAR_VERSION, "key": key, "engine_sha256": _sha256_bytes(data),
            "engine_bytes": len(data), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(side)


def default_cache_dir() -> Path:
    if os.environ.get("STREAMGAN_CACHE_DIR"):
        return Path(os.environ["STREAMGAN_CACHE_DIR"]) / "engines"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamgan" / "engines"


# -- the machine (GPU only) -------------------------------------------------------------------

def _trt():
    """The ``tensorrt`` module, checked to be a supported version (10.x); else ``BackendError``."""
    try:
        import tensorrt as trt
    except ImportError as e:
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            raise BackendError("TensorRT is not installed: pip install 'streamgan[tensorrt]'") from None
        raise BackendError(f"TensorRT is installed but cannot be imported ({e}); reinstall it: "
                           "pip install 'tensorrt>=10,<11'") from None
    version = str(getattr(trt, "__version__", "unknown"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = -1
    if major != SUPPORTED_TRT_MAJOR:
        why = ("is too old" if 0 <= major < SUPPORTED_TRT_MAJOR else
               "is not supported (TensorRT 11 removed the FP16 builder flag streamgan builds with)"
               if major > SUPPORTED_TRT_MAJOR else "has an unreadable version")
        raise BackendError(f"TensorRT {version} {why}: streamgan needs TensorRT "
                           f"{SUPPORTED_TRT_MAJOR}.x; pip install 'tensorrt>={SUPPORTED_TRT_MAJOR},"
                           f"<{SUPPORTED_TRT_MAJOR + 1}'")
    return trt


_LOGGER = None
LOG_LEVELS = ("error", "warning", "info", "verbose")


def trt_logger(trt):
    """The one TensorRT logger of this process (TensorRT wants a single logger shared by every
    builder and runtime). It prints TensorRT's warnings and errors to stderr; set
    ``STREAMGAN_TRT_LOG=info`` (or ``verbose``) for more, ``error`` for less."""
    global _LOGGER
    if _LOGGER is None:
        level = os.environ.get("STREAMGAN_TRT_LOG", "warning").strip().lower()
        if level not in LOG_LEVELS:
            level = "warning"
        _LOGGER = trt.Logger(getattr(trt.Logger, level.upper()))
    return _LOGGER


def current_environment(device: int = 0) -> tuple[str, str, str]:
    """(TensorRT version, GPU name, compute capability 'major.minor') of this machine."""
    trt = _trt()
    try:
        import torch
    except ImportError:
        raise BackendError("the TensorRT backend needs PyTorch with CUDA: pip install 'streamgan[tensorrt]'") from None
    if not torch.cuda.is_available():
        raise BackendError("no usable CUDA GPU (NVIDIA driver missing or too old for this PyTorch)")
    major, minor = torch.cuda.get_device_capability(device)
    return str(trt.__version__), torch.cuda.get_device_name(device), f"{major}.{minor}"


def timing_cache_path(cache_dir: str | Path, environment: tuple[str, str, str]) -> Path:
    """Where the builder's timing cache for this TensorRT version and GPU lives (one per pair:
    TensorRT refuses a cache from another version or device)."""
    digest = hashlib.sha256(json.dumps(list(environment)).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"timing-{digest}.cache"


def _load_timing_cache(config, path: Path | None):
    data = b""
    if path is not None and path.is_file():
        try:
            data = path.read_bytes()
        except OSError as e:
            log.warning("notice: timing cache %s is unreadable (%s); starting a new one", path, e)
    cache = config.create_timing_cache(data) if data else None
    if cache is None or not config.set_timing_cache(cache, False):
        if data:  # corrupt, or written by another TensorRT build: start empty
            log.warning("notice: timing cache %s is not usable here; starting a new one", path)
        cache = config.create_timing_cache(b"")  # b"": a new, empty cache
        config.set_timing_cache(cache, False)
    return cache


def _save_timing_cache(config, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is None:
        return
    data = bytes(cache.serialize())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _build_engine_bytes(onnx_path: Path, precision: str, profile: Profile,
                        workspace_gib: float = DEFAULT_WORKSPACE_GIB, *,
                        timing_cache: Path | None = None, processing=None) -> bytes:
    """Parse ``onnx_path`` with TensorRT's ONNX parser and build a serialised engine, reusing and
    then updating the builder timing cache at ``timing_cache`` (None: no cache). A temporal model's
    state inputs (the graph's inputs after the image) get profiles of their own, sized from the
    image's by the card's ``processing`` (``state_shapes``)."""
    trt = _trt()
    logger = trt_logger(trt)
    try:
        builder = trt.Builder(logger)
    except Exception as e:  # CUDA init failure: the factory returns null and pybind raises
        raise BackendError(f"TensorRT cannot start on this GPU ({e}); is the NVIDIA driver recent enough?") from None
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot import {onnx_path.name}: {errors or 'parse failed'}")
    if network.num_inputs < 1 or network.num_outputs != network.num_inputs:
        raise BackendError(f"{onnx_path.name}: expected an image input and output (and as many state outputs "
                           f"as state inputs), got {network.num_inputs} inputs and {network.num_outputs} outputs")
    inp = network.get_input(0)
    lo, opt, hi = profile.shapes(channels=3)
    dims = tuple(inp.shape)
    if len(dims) != 4:
        raise BackendError(f"{onnx_path.name}: input '{inp.name}' has shape {dims}, expected NCHW")
    for i, d in enumerate(dims):
        if d >= 0 and not (lo[i] == hi[i] == d):
            raise BackendError(
                f"{onnx_path.name}: input '{inp.name}' has a fixed dimension {i} = {d} but the profile "
                f"asks for {lo[i]}..{hi[i]}; export the ONNX with dynamic batch/height/width")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(inp.name, lo, opt, hi)
    scales = state_scales(onnx_path)
    for i in range(1, network.num_inputs):  # a temporal model's state
        st = network.get_input(i)
        opt_profile.set_shape(st.name, *state_shapes(profile, int(tuple(st.shape)[1]), processing,
                                                     scales.get(st.name, 1)))
    config.add_optimization_profile(opt_profile)
    _load_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine for {onnx_path.name} "
                           f"({precision}, {profile.describe()}); see TensorRT's messages above")
    _save_timing_cache(config, timing_cache)
    return bytes(serialized)


def compile_engine(onnx_path: str | Path, *, precision: str = "fp16", batch_range=DEFAULT_BATCH,
                   resolutions=DEFAULT_RESOLUTIONS, height_range=None, width_range=None,
                   cache_dir: str | Path | None = None, size_multiple: int = 4,
                   force: bool = False, profile: Profile | None = None,
                   workspace_gib: float = DEFAULT_WORKSPACE_GIB, device: int = 0,
                   environment: tuple[str, str, str] | None = None, processing=None) -> Path:
    """Path of a valid engine for ``onnx_path`` on this machine, building it when none is cached.
    ``processing``: the card's, which sizes a temporal model's state.

    The build prints one visible line (logger 'streamgan', WARNING) since it takes minutes.
    """
    onnx_path = Path(onnx_path)
    if precision == "auto":
        precision = "fp16"
    if precision not in TRT_PRECISIONS:
        raise UsageError(f"TensorRT precision '{precision}' is not supported; choose fp16 or fp32")
    if not onnx_path.is_file():
        raise ModelError(f"model file {onnx_path} not found")
    if profile is None:
        profile = compute_profile(batch_range, resolutions, height_range=height_range,
                                  width_range=width_range, size_multiple=size_multiple)
    trt_version, gpu_name, cc = environment or current_environment(device)
    from ..card import sha256_file

    key = engine_key(sha256_file(onnx_path), trt_version, gpu_name, cc, precision, profile)
    cache_dir = Path(cache_dir or default_cache_dir())
    path = engine_path_for(cache_dir, onnx_path, key)
    reason = "rebuild requested (--force)" if force else check_engine(path, key)
    if reason is None:
        log.info("using cached TensorRT engine %s", path)
        return path
    bad = unsupported_operators(onnx_path)
    if bad:
        raise BackendError(f"{onnx_path.name} uses operators TensorRT's ONNX parser does not support: "
                           + ", ".join(bad))
    log.warning("building TensorRT engine for %s (%s, %s) on %s: %s; this takes a few minutes, "
                "once", onnx_path.name, precision, profile.describe(), gpu_name, reason)
    t0 = time.perf_counter()
    timing = timing_cache_path(cache_dir, (trt_version, gpu_name, cc))
    data = _build_engine_bytes(onnx_path, precision, profile, workspace_gib, timing_cache=timing,
                               processing=processing)
    write_engine(path, data, key, {"onnx_file": onnx_path.name,
                                   "build_seconds": round(time.perf_counter() - t0, 1)})
    log.warning("TensorRT engine ready in %.0f s: %s", time.perf_counter() - t0, path)
    return path


# -- streamgan compile ------------------------------------------------------------------------

def add_compile_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``streamgan compile`` (the CLI adds the subparser and calls ``run_compile``)."""
    parser.add_argument("model", help="plugin task name (derain), plugin folder, or .onnx file")
    parser.add_argument("--precision", choices=TRT_PRECISIONS, default="fp16",
                        help="engine precision (default fp16)")
    parser.add_argument("--batch", default=f"{DEFAULT_BATCH[0]}..{DEFAULT_BATCH[1]}",
                        help="batch sizes the engine accepts: MIN..MAX or N for 1..N (default 1..8)")
    parser.add_argument("--resolutions", default=None,
                        help="frame sizes the engine accepts: a range 360p..1080p, or a list "
                             "720p,1920x1080 (default: from the card's processing policy, e.g. "
                             "short side 360: 180..840 in both dimensions, landscape, 4:3 and "
                             "portrait; the engine the pipeline uses by default)")
    parser.add_argument("--opt", default=None, metavar="WxH",
                        help="resolution TensorRT tunes for (default: the 16:9 size the card's "
                             "policy runs at, else 1280x720 within the range)")
    parser.add_argument("--size-multiple", type=int, default=None,
                        help="round sizes up to this multiple (default: the model card's, else 4)")
    parser.add_argument("--cache-dir", default=None,
                        help=f"engine cache folder (default $STREAMGAN_CACHE_DIR/engines or {default_cache_dir()})")
    parser.add_argument("--workspace-gib", type=float, default=DEFAULT_WORKSPACE_GIB,
                        help="TensorRT builder workspace limit in GiB (default 4)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a valid engine is cached")
    return parser


def _resolve_model(model: str):
    """(onnx path, the card's Processing or None) for a task name, plugin folder or .onnx file."""
    from .. import plugins

    m = plugins.load(model)
    return m.onnx, (m.card.processing if m.card else None)


def run_compile(args: argparse.Namespace) -> int:
    onnx_path, processing = _resolve_model(args.model)
    multiple = args.size_multiple or (processing.size_multiple if processing else None) or 4
    if args.resolutions is None:
        profile = policy_profile(processing, args.batch, size_multiple=multiple)
        if args.opt is not None:
            profile = compute_profile(args.batch, height_range=(profile.height[0], profile.height[2]),
                                      width_range=(profile.width[0], profile.width[2]),
                                      size_multiple=multiple, opt_resolution=args.opt)
    else:
        profile = compute_profile(args.batch, args.resolutions, size_multiple=multiple,
                                  opt_resolution=args.opt)
    path = compile_engine(onnx_path, precision=args.precision, profile=profile,
                          cache_dir=args.cache_dir, size_multiple=multiple, force=args.force,
                          workspace_gib=args.workspace_gib, processing=processing)
    print(f"{path}  ({args.precision}, {profile.describe()})")
    return 0
