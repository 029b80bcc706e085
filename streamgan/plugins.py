"""Model plugins: discovery, card loading and weight checks.

A plugin is a folder holding ``card.yaml`` (a ``ModelCard``) and the ONNX file it names. Plugins
are found through the ``streamgan.plugins`` entry-point group (the value names an importable
package whose folder is the plugin), so another package can add a task by declaring::

    [project.entry-points."streamgan.plugins"]
    fog = "my_package.fog_plugin"

When streamgan runs from a source checkout without being installed, the repository's own
``plugins/`` folder is searched too. A folder or an ``.onnx`` path can be used directly.

Every model is checked on load (``check_model``): a file that is not an ONNX model, or a model
that does not map one 3-channel image to an image of the same size and channels, is refused with
one ``ModelError`` line before any backend sees it.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from .card import CARD_FILE, ModelCard, Normalisation, Processing, sha256_file
from .errors import ModelError, UsageError, flag

log = logging.getLogger("streamgan")
GROUP = "streamgan.plugins"
_REPO_PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


@dataclass(frozen=True)
class Model:
    """A validated model: its card (if any) and the ONNX file to run."""

    onnx: Path
    card: ModelCard | None
    folder: Path | None
    exposure: str | None = None  # the night exposure chosen (its card's night_exposure), else None

    @property
    def task(self) -> str:
        return self.card.task if self.card else self.onnx.stem

    @property
    def normalisation(self) -> Normalisation:
        return self.card.normalisation if self.card else Normalisation()

    @property
    def processing(self) -> Processing:
        return self.card.processing if self.card else Processing()

    @property
    def sha256(self) -> str | None:
        """The sha256 its card gives the graph that runs (checked on load), or None without a card."""
        if self.card is None:
            return None
        ne = self.card.night_exposure
        if ne is not None and self.exposure in ne.others:
            return ne.others[self.exposure].sha256
        return self.card.weights.sha256

    @property
    def int8(self) -> Path | None:
        """The int8 OpenVINO IR the card names (checked on load), or None."""
        if self.card is None or self.card.int8 is None or self.folder is None or \
                self.onnx.name != self.card.weights.file:  # the int8 model is of the weights' graph only
            return None
        return self.folder / self.card.int8.file

    @property
    def temporal(self):
        """The card's temporal section (``card.Temporal``: the state the graph takes and returns),
        or None for a frame-by-frame model."""
        return self.card.temporal if self.card else None

    @property
    def int8_passed(self) -> bool:
        """True when the card says the int8 model passed its quality gate."""
        return self.int8 is not None and self.card.int8.passed


def discover() -> dict[str, Path]:
    """task name -> plugin folder, from entry points, then the source checkout."""
    found: dict[str, Path] = {}
    for ep in entry_points(group=GROUP):
        try:
            mod = importlib.import_module(ep.value.split(":")[0])
            found.setdefault(ep.name, Path(mod.__file__).resolve().parent)
        except Exception as e:  # a broken third-party plugin must not hide the others
            log.warning("plugin '%s' (%s) cannot be imported: %s", ep.name, ep.value, e)
    if _REPO_PLUGINS.is_dir():
        for card in sorted(_REPO_PLUGINS.glob(f"*/{CARD_FILE}")):
            found.setdefault(card.parent.name, card.parent)
    return found


def load_folder(folder: Path) -> Model:
    card = ModelCard.load(folder / CARD_FILE)
    onnx = folder / card.weights.file
    if not onnx.is_file():
        raise ModelError(f"plugin '{card.task}': weights {onnx} are missing")
    _check_sha256(card.task, onnx, card.weights.sha256)
    if card.int8 is not None:
        _check_int8(card, folder)
    return Model(onnx=onnx, card=card, folder=folder)


def with_exposure(model: Model, name: str | None) -> Model:
    """``model`` running the graph of night exposure ``name`` (checked against its sha256); a name
    its card does not offer is a UsageError naming those it does."""
    choices = model.card.night_exposure if model.card else None
    if choices is None:
        if name is not None:
            raise UsageError(f"{flag('--night-exposure', 'night_exposure')} is for day-to-night "
                             f"models; {model.task} has no night exposures")
        return model
    if name is None or name == choices.default:
        return Model(onnx=model.onnx, card=model.card, folder=model.folder, exposure=choices.default)
    if name not in choices.others:
        raise UsageError(f"{flag('--night-exposure', 'night_exposure')} {name!r} is not one of "
                         f"{model.task}'s: {', '.join(choices.names)}")
    w = choices.others[name]
    onnx = model.folder / w.file
    if not onnx.is_file():
        raise ModelError(f"plugin '{model.task}': the graph of night exposure '{name}', {onnx}, "
                         "is missing")
    _check_sha256(model.task, onnx, w.sha256)
    return Model(onnx=onnx, card=model.card, folder=model.folder, exposure=name)


def _check_sha256(task: str, path: Path, want: str, what: str = "") -> None:
    """A file a card names must have the sha256 the card gives it (``what``: how to call the file)."""
    digest = sha256_file(path)
    if digest != want:
        raise ModelError(f"plugin '{task}': {what}{path} does not match its card (sha256 "
                         f"{digest[:12]}..., card says {want[:12]}...): the file is corrupt or was "
                         "replaced")


def _check_int8(card: ModelCard, folder: Path) -> None:
    """The int8 files the card names must be there and match their sha256: a plugin whose int8
    model is missing or swapped is refused as a whole (never silently run in fp32 instead)."""
    q = card.int8
    if q.of_sha256 is not None and q.of_sha256 != card.weights.sha256:
        raise ModelError(f"plugin '{card.task}': its int8 model was made from another fp32 model "
                         f"(sha256 {q.of_sha256[:12]}..., weights are {card.weights.sha256[:12]}...); "
                         "re-run `streamgan-train quantize` for this plugin")
    for name, want in ((q.file, q.sha256), (q.weights_file, q.weights_sha256)):
        path = folder / name
        if not path.is_file():
            raise ModelError(f"plugin '{card.task}': int8 model file {path} named in its card is "
                             "missing (re-run `streamgan-train quantize`, or remove the card's "
                             "int8 section)")
        _check_sha256(card.task, path, want, "int8 model file ")


def load(task_or_path: str | Path, night_exposure: str | None = None) -> Model:
    """Load a plugin by task name, plugin folder, or bare ONNX file (checked: ``check_model``).
    ``night_exposure``: one of the exposures its card offers (a day-to-night plugin's graphs), by
    name; None is the card's default."""
    name = str(task_or_path)
    p = Path(name)
    # a bare task name is the installed plugin, even beside a folder of that name in the current folder
    # (that one is ./derain)
    installed = discover() if p.name == name and not name.startswith(".") else {}
    if name in installed:
        model = load_folder(installed[name])
    elif p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise ModelError(f"model file {p} not found")
        model = Model(onnx=p, card=None, folder=None)
    elif p.is_dir():
        if not (p / CARD_FILE).is_file():
            raise ModelError(f"{p} is not a plugin folder (no {CARD_FILE})")
        model = load_folder(p)
    else:
        plugins = installed or discover()
        known = ", ".join(sorted(plugins)) or "none installed"
        raise ModelError(f"unknown task '{task_or_path}' (installed: {known})")
    model = with_exposure(model, night_exposure)
    check_model(model.onnx, model.processing.size_multiple, model.temporal)
    return model


def _last_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


def check_model(onnx: Path, multiple: int = 4, temporal=None) -> None:
    """Refuse what is not an image-to-image generator: one input and one output, NCHW images
    with 3 channels, the output the size of the input. Read with OpenVINO's ONNX reader (a
    core dependency, quiet, ~0.1 s) and its shape inference on a 1x3xSxS input. A temporal
    model (``temporal``: its card's section) takes and returns its state beside the image: the
    graph must have exactly the inputs and outputs the card names, the image first."""
    try:
        import openvino as ov
    except ImportError:  # pragma: no cover - a core dependency; the backend checks at run time
        return
    try:
        fe = ov.frontend.FrontEndManager().load_by_framework("onnx")
        graph = fe.convert(fe.load(str(onnx)))
    except Exception as e:
        raise ModelError(f"{onnx}: not a valid ONNX model ({_last_line(e)})") from None
    if temporal is not None:
        _check_state(onnx, graph, temporal)
        return
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(f"{onnx}: has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                         "outputs; a generator takes one image and returns one (a temporal "
                         "model names its state in its card's temporal section)")
    shape = graph.inputs[0].get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() != 4:
        raise ModelError(f"{onnx}: its input {shape} is not an NCHW image batch")
    if shape.rank.is_static and shape[1].is_static and shape[1].get_length() != 3:
        raise ModelError(f"{onnx}: its input has {shape[1].get_length()} channels; frames are "
                         "3-channel (RGB) images")
    side = -(-64 // multiple) * multiple
    test = [1, 3] + [d.get_length() if shape.rank.is_static and d.is_static else side
                     for d in (list(shape)[2:] if shape.rank.is_static else [None, None])]
    try:
        graph.reshape({graph.inputs[0].any_name: test})
    except Exception:
        # Some models take only certain sizes (a fixed-size constant inside a graph whose
        # input is declared dynamic). That is no reason to refuse the model: the frames'
        # own size is checked when the engine is built for them, stream by stream.
        out = graph.outputs[0].get_partial_shape()
        if out.rank.is_static and out.rank.get_length() != 4:
            raise ModelError(f"{onnx}: returns {out}, not an NCHW image batch") from None
        return
    out = graph.outputs[0].get_partial_shape()
    if out.is_static and list(out.get_shape()) != test:
        got = "x".join(map(str, out.get_shape()))
        raise ModelError(f"{onnx}: turns a {'x'.join(map(str, test))} image into {got}; a "
                         "generator must return an image of its input's size and channels")


def _check_state(onnx: Path, graph, temporal) -> None:
    """A temporal graph: the image, then the card's state inputs; the image, then the state
    outputs; each state rank 4 with the card's channels and float32."""
    def names(ports):
        return [p.any_name for p in ports]

    want_in = [s.input for s in temporal.state]
    want_out = [s.output for s in temporal.state]
    ins, outs = names(graph.inputs), names(graph.outputs)
    for kind, want, have in (("inputs", want_in, ins[1:]), ("outputs", want_out, outs[1:])):
        missing = [n for n in want if n not in have]
        if missing or len(have) != len(want):
            raise ModelError(f"{onnx}: its card declares the state {kind} {want}, the graph has "
                             f"{have} beside the image ({ins[:1] + outs[:1]}); the graph does not "
                             "take and return the state its card declares")
    ports = {p.any_name: p for p in list(graph.inputs) + list(graph.outputs)}
    for s in temporal.state:
        for name in (s.input, s.output):
            port = ports[name]
            shape, kind = port.get_partial_shape(), port.get_element_type().get_type_name()
            if kind != "f32":
                raise ModelError(f"{onnx}: state '{name}' is {kind}; a state is float32")
            if shape.rank.is_static and (shape.rank.get_length() != 4 or (
                    shape[1].is_static and shape[1].get_length() != s.channels)):
                raise ModelError(f"{onnx}: state '{name}' has the shape {shape}; its card says "
                                 f"N x {s.channels} x h x w")
