"""Issue 12: int8 models named in the card (checked, never silently swapped for fp32), the auto choice,
and the YUV path (colour conversion inside the OpenVINO graph) against the RGB path."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from streamgan import Translator, cli
from streamgan.card import CARD_FILE, Int8, ModelCard, sha256_file
from streamgan.engines import openvino as ov_backend
from streamgan.io import EncodeOptions

from conftest import REPO, frame_derain

SAMPLE = REPO / "samples" / "rainy_dashcam.mp4"


def _plugin(tmp_path: Path, passed: bool = True, int8: bool = True, name: str = "derain") -> Path:
    """A copy of the shipped derain network, frame by frame (``conftest.frame_derain``), with an int8 section naming an OpenVINO IR beside it
    (here the fp32 graph saved as IR: what matters is which file runs and that it is checked)."""
    import openvino as ov

    src = frame_derain()
    dst = tmp_path / name
    dst.mkdir()
    shutil.copy(src / "model.onnx", dst / "model.onnx")
    card = ModelCard.load(src / CARD_FILE).model_copy(update={"int8": None})  # the shipped one's is not copied
    if int8:
        ov.save_model(ov.Core().read_model(str(dst / "model.onnx")), str(dst / "model.int8.xml"))
        card = card.model_copy(update={"int8": Int8(
            sha256=sha256_file(dst / "model.int8.xml"), weights_sha256=sha256_file(dst / "model.int8.bin"),
            of_sha256=card.weights.sha256, passed=passed)})
    card.dump(dst / CARD_FILE)
    return dst


def _run_cli(args, capsys) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


def test_card_without_int8_writes_no_int8_key_and_with_it_round_trips(tmp_path):
    plain = _plugin(tmp_path, int8=False, name="a")
    assert "\nint8:" not in (plain / CARD_FILE).read_text()
    q = _plugin(tmp_path, name="b")
    card = ModelCard.load(q / CARD_FILE)
    assert card.int8.file == "model.int8.xml" and card.int8.passed is True
    assert card.int8.sha256 == sha256_file(q / "model.int8.xml")


def test_int8_file_not_matching_its_card_is_refused(tmp_path, capsys):
    p = _plugin(tmp_path)
    with open(p / "model.int8.bin", "r+b") as f:  # one weight byte changed
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 1]))
    code, err = _run_cli(["run", "--task", str(p), str(SAMPLE), "-o", str(tmp_path / "o.mp4"),
                          "--precision", "fp32", "-q"], capsys)
    assert code == 5
    assert "model.int8.bin does not match its card" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_card_naming_a_missing_int8_file_is_refused(tmp_path, capsys):
    p = _plugin(tmp_path)
    (p / "model.int8.xml").unlink()
    code, err = _run_cli(["run", "--task", str(p), str(SAMPLE), "-o", str(tmp_path / "o.mp4"),
                          "--precision", "int8", "-q"], capsys)
    assert code == 5
    assert "model.int8.xml named in its card is missing" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_int8_on_a_backend_without_int8_is_bad_usage(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    p = _plugin(tmp_path)
    code, err = _run_cli(["run", "--task", str(p), str(SAMPLE), "-o", str(tmp_path / "o.mp4"),
                          "--backend", "onnxruntime", "--precision", "int8", "-q"], capsys)
    assert code == 2
    assert "int8 runs on the openvino backend only" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_int8_of_a_model_without_one_is_a_model_error(tmp_path, capsys):
    p = _plugin(tmp_path, int8=False)
    code, err = _run_cli(["run", "--task", str(p), str(SAMPLE), "-o", str(tmp_path / "o.mp4"),
                          "--precision", "int8", "-q"], capsys)
    assert code == 5
    assert "has no int8 version" in err


@pytest.mark.parametrize("passed,vnni,runs_int8", [(True, True, True), (False, True, False),
                                                   (True, False, False)])
def test_auto_runs_int8_only_where_it_passed_and_the_cpu_has_vnni(tmp_path, monkeypatch, passed, vnni,
                                                                  runs_int8):
    monkeypatch.setattr(ov_backend, "cpu_int8_accelerated", lambda *a: vnni)
    p = _plugin(tmp_path, passed=passed)
    tr = Translator(str(p), "openvino", "auto")
    assert (tr.backend.model_path.name == "model.int8.xml") is runs_int8
    assert ("int8" in tr.describe()) is runs_int8
    explicit = Translator(str(p), "openvino", "int8")  # asked for: runs even where the gate failed
    assert explicit.backend.model_path.name == "model.int8.xml"


def test_cpu_flags_decide_int8_acceleration(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 fma\n")
    assert not ov_backend.cpu_int8_accelerated(str(info))
    info.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_vnni\n")
    assert ov_backend.cpu_int8_accelerated(str(info))


def test_quantised_model_runs_close_to_fp32(tmp_path):
    pytest.importorskip("nncf")
    pytest.importorskip("trainer.quantize")
    import openvino as ov
    from trainer.quantize import quantize_model

    p = _plugin(tmp_path)
    with av.open(str(SAMPLE)) as c:
        frames = [f.to_ndarray(format="rgb24")[:96, :160] for _, f in zip(range(4), c.decode(video=0))]
    ov.save_model(quantize_model(p / "model.onnx", frames, (0.5,) * 3, (0.5,) * 3), str(p / "model.int8.xml"))
    card = ModelCard.load(p / CARD_FILE)
    q = card.int8.model_copy(update={"sha256": sha256_file(p / "model.int8.xml"),
                                     "weights_sha256": sha256_file(p / "model.int8.bin")})
    card.model_copy(update={"int8": q}).dump(p / CARD_FILE)
    x = np.stack(frames[:2])
    fp32 = Translator(str(p), "openvino", "fp32").translate(x)
    int8 = Translator(str(p), "openvino", "int8").translate(x)
    diff = np.abs(int8.astype(np.int16) - fp32).mean()
    assert 0 < diff < 3.0  # int8 arithmetic, not the fp32 graph; close on 0..255


def _decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_yuv_path_matches_rgb_path_on_a_real_clip(tmp_path):
    """640x360 at the card's policy needs no scaling: the decoder's planes go into the graph and the
    graph's planes into the encoder. Lossless encoding so only the two paths differ."""
    tr = Translator("derain", "openvino", "fp32")
    calls = []
    run_i420 = tr.backend.run_i420
    tr.backend.run_i420 = lambda b, *state: calls.append(b.shape) or run_i420(b, *state)
    enc = EncodeOptions(crf=0)
    tr.translate_video(SAMPLE, tmp_path / "yuv.mp4", frames=12, encode=enc)
    assert calls and calls[0][1:] == (540, 640)  # I420: 360 * 3/2 rows of 640
    tr.yuv = False
    n = len(calls)
    tr.translate_video(SAMPLE, tmp_path / "rgb.mp4", frames=12, encode=enc)
    assert len(calls) == n  # the RGB path did not use it
    a, b = _decoded(tmp_path / "yuv.mp4"), _decoded(tmp_path / "rgb.mp4")
    assert len(a) == len(b) == 12
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b)])
    assert 10 * np.log10(255 ** 2 / mse) > 40


def test_scaled_compare_and_odd_inputs_keep_the_rgb_path(tmp_path, udacity_clip):
    scaled = Translator("derain", "openvino", "fp32", size=360)  # the user asks for a smaller size
    scaled.backend.run_i420 = lambda b, *state: pytest.fail("the YUV path was taken")
    scaled.translate_video(udacity_clip, tmp_path / "a.mp4", frames=3)  # 960x540 -> runs at 640x360
    tr = Translator("derain", "openvino", "fp32")
    tr.backend.run_i420 = lambda b, *state: pytest.fail("the YUV path was taken")
    tr.translate_video(SAMPLE, tmp_path / "b.mp4", frames=3, compare=True)
    assert len(_decoded(tmp_path / "a.mp4")) == 3 and len(_decoded(tmp_path / "b.mp4")) == 3
