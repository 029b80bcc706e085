"""Model plugins: discovery, card loading and weight checks.

A plugin is a folder holding ``card.yaml`` (a ``ModelCard``) and the ONNX file it names. Plugins
are found through the ``streamgan.plugins`` entry-point group (the value names an importable
package whose folder is the plugin), so another package can add a task by declaring::

    [project.entry-points."streamgan.plugins"]
    fog = "my_package.fog_plugin"

When streamgan runs from a source checkout without being installed, the repository's own
``plugins/`` folder is searched too. A folder or an ``.onnx`` path can be used directly.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from .card import CARD_FILE, ModelCard, Normalisation, Processing, sha256_file
from .errors import ModelError

log = logging.getLogger("streamgan")
GROUP = "streamgan.plugins"
_REPO_PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


@dataclass(frozen=True)
class Model:
    """A validated model: its card (if any) and the ONNX file to run."""

    onnx: Path
    card: ModelCard | None
    folder: Path | None

    @property
    def task(self) -> str:
        return self.card.task if self.card else self.onnx.stem

    @property
    def normalisation(self) -> Normalisation:
        return self.card.normalisation if self.card else Normalisation()

    @property
    def processing(self) -> Processing:
        return self.card.processing if self.card else Processing()


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
    digest = sha256_file(onnx)
    if digest != card.weights.sha256:
        raise ModelError(
            f"plugin '{card.task}': {onnx} does not match its card (sha256 {digest[:12]}..., "
            f"card says {card.weights.sha256[:12]}...): the file is corrupt or was replaced")
    return Model(onnx=onnx, card=card, folder=folder)


def load(task_or_path: str | Path) -> Model:
    """Load a plugin by task name, plugin folder, or bare ONNX file."""
    p = Path(task_or_path)
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise ModelError(f"model file {p} not found")
        return Model(onnx=p, card=None, folder=None)
    if p.is_dir():
        if not (p / CARD_FILE).is_file():
            raise ModelError(f"{p} is not a plugin folder (no {CARD_FILE})")
        return load_folder(p)
    plugins = discover()
    if str(task_or_path) not in plugins:
        known = ", ".join(sorted(plugins)) or "none installed"
        raise ModelError(f"unknown task '{task_or_path}' (installed: {known})")
    return load_folder(plugins[str(task_or_path)])
