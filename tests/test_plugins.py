"""Plugins: cards validated on load, weights checked, third-party tasks found by entry point."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from conftest import make_clip, read_video, run_cli
from streamgan import plugins
from streamgan.card import ModelCard, sha256_file
from streamgan.errors import ModelError


def _card(onnx, **over) -> dict:
    card = {
        "task": "fog", "title": "Test fog model", "direction": "foggy -> clear",
        "architecture": "identity", "licence": "MIT",
        "processing": {"policy": "native", "size_multiple": 4},
        "weights": {"file": onnx.name, "sha256": sha256_file(onnx)},
    }
    card.update(over)
    return card


def _plugin(tmp_path, identity_onnx, **over):
    folder = tmp_path / "fog_plugin"
    folder.mkdir()
    shutil.copy(identity_onnx, folder / identity_onnx.name)
    (folder / "card.yaml").write_text(yaml.safe_dump(_card(folder / identity_onnx.name, **over)))
    return folder


def test_valid_plugin_folder_loads(tmp_path, identity_onnx):
    m = plugins.load(_plugin(tmp_path, identity_onnx))
    assert m.task == "fog" and m.card.processing.size_multiple == 4


def test_a_task_name_is_the_installed_plugin_even_beside_a_folder_of_that_name(tmp_path, identity_onnx,
                                                                               monkeypatch):
    """A folder ./derain (say, an adapted plugin) does not silently replace the shipped derain for
    `streamgan derain`; ./derain names it."""
    local = _plugin(tmp_path, identity_onnx)
    local.rename(tmp_path / "derain")
    monkeypatch.chdir(tmp_path)
    shipped = plugins.load("derain")
    assert shipped.task == "derain" and shipped.folder.resolve() == plugins.discover()["derain"].resolve()
    assert plugins.load("./derain").task == "fog"


def test_corrupt_weights_are_refused(tmp_path, identity_onnx):
    folder = _plugin(tmp_path, identity_onnx)
    with open(folder / identity_onnx.name, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ModelError, match="corrupt or was replaced"):
        plugins.load(folder)


def test_missing_weights_are_refused(tmp_path, identity_onnx):
    folder = _plugin(tmp_path, identity_onnx)
    (folder / identity_onnx.name).unlink()
    with pytest.raises(ModelError, match="missing"):
        plugins.load(folder)


@pytest.mark.parametrize("over,field", [
    ({"task": "Bad Name"}, "task"),
    ({"processing": {"policy": "short_side"}}, "processing"),
    ({"weights": {"file": "model.onnx", "sha256": "abc"}}, "weights.sha256"),
    ({"colour": "blue"}, "colour"),
])
def test_invalid_card_names_the_field(tmp_path, identity_onnx, over, field):
    folder = _plugin(tmp_path, identity_onnx, **over)
    with pytest.raises(ModelError, match=field.replace(".", r"\.")):
        plugins.load(folder)


def test_card_roundtrip(tmp_path, identity_onnx):
    card = ModelCard.model_validate(_card(identity_onnx))
    card.dump(tmp_path / "card.yaml")
    assert ModelCard.load(tmp_path / "card.yaml") == card


def test_third_party_plugin_by_entry_point(tmp_path, identity_onnx):
    """A package outside streamgan adds a task through the streamgan.plugins entry point."""
    site = tmp_path / "site"
    pkg = site / "fogpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(identity_onnx, pkg / "model.onnx")
    (pkg / "card.yaml").write_text(yaml.safe_dump(_card(pkg / "model.onnx")))
    dist = site / "fogpkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fogpkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[streamgan.plugins]\nfog = fogpkg\n")
    src = make_clip(tmp_path / "clip.mp4", frames=5)
    env = {"PYTHONPATH": str(site)}
    r = run_cli("models", env=env)
    assert r.returncode == 0 and "fog" in r.stdout and "Test fog model" in r.stdout
    r = run_cli("fog", src, "-o", tmp_path / "out.mp4", "-q", env=env)
    assert r.returncode == 0, r.stderr
    assert len(read_video(tmp_path / "out.mp4")["frames"]) == 5


def test_broken_plugin_listed_not_fatal(tmp_path, identity_onnx, monkeypatch):
    folder = _plugin(tmp_path, identity_onnx)
    (folder / identity_onnx.name).write_bytes(b"swapped")
    monkeypatch.setattr(plugins, "discover", lambda: {"fog": folder})
    from streamgan.cli import main

    assert main(["models"]) == 0


def _nan_onnx(path, value: float):
    """A model whose output is its input times ``value`` (NaN or infinity: garbage)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    k = numpy_helper.from_array(np.array(value, np.float32), "k")
    graph = helper.make_graph([helper.make_node("Mul", ["input", "k"], ["output"])], "nan",
                              [x], [y], [k])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_model_that_outputs_nan_or_inf_is_a_model_error(tmp_path, backend, value):
    from streamgan import errors

    if backend == "torch":
        pytest.importorskip("torch")
    onnx_path = _nan_onnx(tmp_path / "broken.onnx", value)
    clip = make_clip(tmp_path / "in.mp4", frames=6, size=(64, 48))
    out = tmp_path / "out.mp4"
    r = run_cli("run", "--task", onnx_path, clip, "-o", out, "--backend", backend,
                "--precision", "fp32")
    assert r.returncode == errors.EXIT_MODEL, r.stderr
    assert "NaN or infinite" in r.stderr and "wrote" not in r.stderr
    assert not out.exists()


def test_a_card_with_std_zero_is_refused(tmp_path, identity_onnx):
    folder = _plugin(tmp_path, identity_onnx, normalisation={"mean": [0.5] * 3,
                                                             "std": [0.5, 0.0, 0.5]})
    with pytest.raises(ModelError, match="std must be more than 0"):
        plugins.load(folder)


def _halve_onnx(path):
    """An ONNX model that halves the brightness ([-1, 1] range: (x + 1) / 2 - 1)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [helper.make_node("Mul", ["input", "half"], ["m"]),
             helper.make_node("Sub", ["m", "half"], ["output"])]
    graph = helper.make_graph(nodes, "halve", [x], [y], initializer=[half])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _night_plugin(tmp_path, identity_onnx):
    """A day-to-night plugin with two night exposures: 'dashcam' (the weights: identity) and 'bright' (its
    own graph: half brightness, so the two are told apart)."""
    folder = _plugin(tmp_path, identity_onnx, task="nightfall")
    other = _halve_onnx(folder / "model.bright.onnx")
    card = yaml.safe_load((folder / "card.yaml").read_text())
    card["night_exposure"] = {"default": "dashcam", "others": {"bright": {"file": other.name,
                                                                          "sha256": sha256_file(other)}}}
    (folder / "card.yaml").write_text(yaml.safe_dump(card))
    return folder


def test_night_exposure_runs_the_graph_of_the_exposure_asked_for(tmp_path, identity_onnx):
    from streamgan.translator import Translator

    folder = _night_plugin(tmp_path, identity_onnx)
    frame = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    default = Translator(folder, "onnxruntime")
    assert default.model.exposure == "dashcam" and "(dashcam night)" in default.describe()
    np.testing.assert_array_equal(default.translate(frame), frame)
    bright = Translator(folder, "onnxruntime", night_exposure="bright")
    assert bright.model.onnx.name == "model.bright.onnx" and bright.model.int8 is None
    assert np.abs(bright.translate(frame).astype(int) - frame // 2).max() <= 1
    assert Translator(folder, "onnxruntime", night_exposure="dashcam").model.onnx.name == identity_onnx.name


def test_a_night_exposure_not_offered_is_a_usage_error_naming_those_that_are(tmp_path, identity_onnx):
    from streamgan.errors import UsageError

    folder = _night_plugin(tmp_path, identity_onnx)
    with pytest.raises(UsageError, match="'dim' is not one of nightfall's: dashcam, bright"):
        plugins.load(folder, night_exposure="dim")
    (tmp_path / "plain").mkdir()
    plain = _plugin(tmp_path / "plain", identity_onnx)
    with pytest.raises(UsageError, match="fog has no night exposures"):
        plugins.load(plain, night_exposure="bright")
    with open(folder / "model.bright.onnx", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ModelError, match="model.bright.onnx does not match its card"):
        plugins.load(folder, night_exposure="bright")
    assert plugins.load(folder).exposure == "dashcam"  # the default graph is not the tampered one


def test_cli_refuses_an_unknown_night_exposure_before_writing_anything(tmp_path, identity_onnx):
    folder = _night_plugin(tmp_path, identity_onnx)
    clip = make_clip(tmp_path / "in.mp4", frames=4)
    out = tmp_path / "out.mp4"
    r = run_cli("run", "--task", str(folder), str(clip), "-o", str(out), "--night-exposure", "dim")
    assert r.returncode == 2, r.stderr
    assert "--night-exposure 'dim' is not one of nightfall's: dashcam, bright" in r.stderr
    assert not out.exists() and not list(tmp_path.glob("out*"))
    r = run_cli("run", "--task", str(folder), str(clip), "-o", str(out), "--night-exposure", "bright")
    assert r.returncode == 0, r.stderr
    assert len(read_video(out)["frames"]) == 4


@pytest.mark.parametrize("section", [
    {"default": "dashcam", "others": {"dashcam": {"file": "x.onnx", "sha256": "0" * 64}}},
    {"default": "Dash cam"},
])
def test_a_card_with_a_bad_night_exposure_section_is_refused(tmp_path, identity_onnx, section):
    folder = _plugin(tmp_path, identity_onnx, night_exposure=section)
    with pytest.raises(ModelError, match="night_exposure"):
        plugins.load(folder)


def test_int8_with_a_night_exposure_that_has_none_is_a_usage_error(tmp_path, identity_onnx):
    """The card's int8 model is of the default graph: asking for it with another exposure says so."""
    from streamgan.errors import UsageError
    from streamgan.translator import Translator

    folder = _night_plugin(tmp_path, identity_onnx)
    for name in ("model.int8.xml", "model.int8.bin"):
        (folder / name).write_bytes(b"of the default graph")
    card = yaml.safe_load((folder / "card.yaml").read_text())
    card["int8"] = {"sha256": sha256_file(folder / "model.int8.xml"),
                    "weights_sha256": sha256_file(folder / "model.int8.bin"), "passed": True}
    (folder / "card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(UsageError, match="int8 model is of its default night exposure \\(dashcam\\); "
                                         "night exposure bright has none"):
        Translator(folder, "openvino", "int8", night_exposure="bright")
