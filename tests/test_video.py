"""What a user relies on from a translated video: frames, timestamps, audio, size, rotation."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import make_clip, read_video
from streamgan import Translator
from streamgan.io import EncodeOptions, probe


@pytest.fixture(scope="module")
def identity(identity_onnx):
    return Translator(identity_onnx, backend="openvino", precision="fp32")


def test_real_clip_keeps_frames_timestamps_and_audio(identity, udacity_clip, tmp_path):
    out = tmp_path / "out.mp4"
    res = identity.translate_video(udacity_clip, out)
    src, dst = read_video(udacity_clip), read_video(out)
    assert res.frames == len(src["frames"]) == len(dst["frames"]) == 221
    assert dst["times"] == pytest.approx(src["times"], abs=1e-3)
    assert (dst["width"], dst["height"]) == (960, 540)
    # audio copied, packet for packet, byte for byte
    assert dst["audio"] == src["audio"] == [("aac", 48000)]
    assert dst["audio_packets"] == src["audio_packets"]
    # identity model: the picture only changes by the lossy re-encode
    diff = np.abs(src["frames"][100].astype(int) - dst["frames"][100]).mean()
    assert diff < 4


def test_variable_frame_rate_stays_variable(identity, tmp_path):
    pts = [0, 40, 80, 200, 240, 500, 540, 580, 1000, 1040]  # ms, irregular gaps
    src = make_clip(tmp_path / "vfr.mkv", pts=pts, time_base=Fraction(1, 1000))
    out = tmp_path / "vfr.out.mkv"
    identity.translate_video(src, out)
    assert read_video(out)["times"] == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    out_mp4 = tmp_path / "vfr.out.mp4"
    identity.translate_video(src, out_mp4)
    assert read_video(out_mp4)["times"] == pytest.approx([p / 1000 for p in pts], abs=1e-3)


def test_gif_timestamps_kept(identity, gif_clip, tmp_path):
    out = tmp_path / "gif.mp4"
    identity.translate_video(gif_clip, out)
    src, dst = read_video(gif_clip), read_video(out)
    assert len(dst["frames"]) == len(src["frames"]) == 72
    assert dst["times"] == pytest.approx(src["times"], abs=1e-3)
    assert np.diff(dst["times"]).mean() == pytest.approx(0.13, abs=0.01)  # not 25 fps


def test_odd_size_kept_with_exact_size(tiny_generator, tmp_path):
    _, onnx = tiny_generator  # needs a multiple of 4 inside: padded and cropped back
    src = make_clip(tmp_path / "odd.mkv", size=(101, 59), codec="ffv1", pix_fmt="yuv444p")
    out = tmp_path / "odd.out.mkv"
    Translator(onnx, backend="openvino").translate_video(
        src, out, encode=EncodeOptions(exact_size=True))
    d = read_video(out)
    assert (d["width"], d["height"]) == (101, 59)
    assert len(d["frames"]) == 12


def test_rotation_metadata_kept(identity, tmp_path):
    src = make_clip(tmp_path / "rot.mp4", rotation=90)
    assert read_video(src)["rotation"] == 90
    out = tmp_path / "rot.out.mp4"
    identity.translate_video(src, out)
    assert read_video(out)["rotation"] == 90
    assert probe(out).rotation == 90


def test_audio_reencoded_when_container_cannot_carry_it(identity, tmp_path):
    src = make_clip(tmp_path / "pcm.mkv", frames=25, audio="pcm_s16le")
    out = tmp_path / "pcm.out.mp4"
    identity.translate_video(src, out)
    d = read_video(out)
    assert d["audio"] == [("aac", 44100)]
    with av.open(str(out)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples == pytest.approx(44100, rel=0.05)  # one second of sound survives
    # and copied as-is into a container that can carry it
    out_mkv = tmp_path / "pcm.out.mkv"
    identity.translate_video(src, out_mkv)
    assert read_video(out_mkv)["audio_packets"] == read_video(src)["audio_packets"]


def test_trim_start_duration_frames(identity, udacity_clip, tmp_path):
    out = tmp_path / "trim.mp4"
    identity.translate_video(udacity_clip, out, start=2.0, duration=1.0)
    d = read_video(out)
    assert len(d["frames"]) == 25
    assert d["times"][0] == pytest.approx(2.0, abs=1e-3)
    out2 = tmp_path / "frames.mp4"
    identity.translate_video(udacity_clip, out2, frames=10)
    assert len(read_video(out2)["frames"]) == 10


def test_compare_writes_side_by_side(tiny_generator, tmp_path):
    _, onnx = tiny_generator
    src = make_clip(tmp_path / "c.mp4", frames=5)
    out = tmp_path / "c.cmp.mp4"
    Translator(onnx, backend="openvino").translate_video(src, out, compare=True)
    d, s = read_video(out), read_video(src)
    assert (d["width"], d["height"]) == (192, 64)
    left = d["frames"][2][:, :96].astype(int)
    right = d["frames"][2][:, 96:].astype(int)
    assert np.abs(left - s["frames"][2]).mean() < 4  # left half is the input
    assert np.abs(right - s["frames"][2]).mean() > 20  # right half is the translation


@pytest.mark.parametrize("codec,names", [("h265", ("hevc",)), ("av1", ("av1", "libdav1d"))])
def test_other_codecs(identity, tmp_path, codec, names):
    src = make_clip(tmp_path / "s.mp4", frames=6)
    out = tmp_path / f"s.{codec}.mkv"
    identity.translate_video(src, out, encode=EncodeOptions(codec=codec, crf=30, preset=None))
    d = read_video(out)
    assert d["codec"] in names and len(d["frames"]) == 6


def test_image_sequence_folder(identity, tmp_path):
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(np.full((40, 60, 3), i * 30, np.uint8)).save(folder / f"{i:04d}.png")
    out = tmp_path / "seq.mp4"
    identity.translate_video(folder, out)
    d = read_video(out)
    assert len(d["frames"]) == 7
    assert d["frames"][3].mean() == pytest.approx(90, abs=3)
    # `streamgan info` counts what no header counts: a folder's images, and one image
    assert probe(folder).frames == 7 and probe(folder / "0003.png").frames == 1


def test_image_folder_of_mixed_sizes_is_refused_before_any_work(identity, tmp_path):
    from PIL import Image

    from streamgan.errors import InputError

    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 60, 3), 50, np.uint8)).save(folder / f"{i:04d}.jpg")
    Image.fromarray(np.full((72, 128, 3), 50, np.uint8)).save(folder / "0002.jpg")  # one 16:9 among 3:2
    out = tmp_path / "seq.mp4"
    with pytest.raises(InputError, match=r"0002\.jpg: 128x72, but 0000\.jpg is 60x40"):
        identity.translate_video(folder, out)
    assert list(tmp_path.iterdir()) == [folder]  # no output, no temp file left


def test_damaged_image_in_a_folder_is_skipped_and_named(identity, tmp_path, caplog):
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
    whole = (folder / "0003.jpg").read_bytes()
    (folder / "0003.jpg").write_bytes(whole[: len(whole) // 3])  # cut off mid-scan
    out = tmp_path / "seq.mp4"
    with caplog.at_level("WARNING"):
        identity.translate_video(folder, out)
    assert len(read_video(out)["frames"]) == 4  # not decoded half grey into the video
    assert any("0003.jpg: damaged image skipped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("empty", [0, 2])
def test_an_empty_image_in_a_folder_is_skipped_and_the_rest_goes_on(identity, tmp_path, caplog,
                                                                    empty):
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(folder / f"{i:04d}.png")
    (folder / f"{empty:04d}.png").write_bytes(b"")
    out = tmp_path / "seq.mp4"
    with caplog.at_level("WARNING"):
        res = identity.translate_video(folder, out)
    d = read_video(out)
    assert len(d["frames"]) == 5 and res.bad_frames == 1
    # each image keeps its place in time: the empty one leaves a gap of one frame
    want = [i / 25 for i in range(6) if i != empty]
    assert [t - d["times"][0] for t in d["times"]] == \
        pytest.approx([t - want[0] for t in want], abs=1e-3)
    assert any(f"{empty:04d}.png: empty image skipped" in r.getMessage() for r in caplog.records)


def test_processing_resolution_returns_source_size(tiny_generator, udacity_clip, tmp_path):
    _, onnx = tiny_generator
    tr = Translator(onnx, backend="openvino", size=180)
    assert tr.processing_size(960, 540) == (320, 180)
    out = tmp_path / "small.mp4"
    tr.translate_video(udacity_clip, out, frames=5)
    d = read_video(out)
    assert (d["width"], d["height"]) == (960, 540) and len(d["frames"]) == 5


def test_stream_yields_frames_with_timestamps(identity, udacity_clip):
    seen = []
    frames = list(identity.stream(udacity_clip, frames=30, on_frame=seen.append))
    assert len(frames) == len(seen) == 30
    assert [f.index for f in frames] == list(range(30))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(30)])
    assert frames[0].image.shape == (540, 960, 3)
