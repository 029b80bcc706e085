"""Hardware decode/encode picks: the reasoning with the machine simulated, and real video on this one."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from streamgan import gpu_io  # noqa: E402
from streamgan.errors import UsageError  # noqa: E402


def _machine(monkeypatch, *, driver=True,
             codecs=("h264_nvenc", "hevc_nvenc", "av1_nvenc", "libx264", "libx265", "libsvtav1"),
             hwdevices=("cuda",), encoder_probe=None, decoder_probe=None, gpus=("NVIDIA L4",)):
    monkeypatch.setattr(gpu_io, "_driver_present", lambda: driver)
    monkeypatch.setattr(gpu_io, "_gpu_names", lambda: list(gpus))
    monkeypatch.setattr(gpu_io, "_noticed", set())
    monkeypatch.setattr(gpu_io, "_codecs", lambda: set(codecs))
    monkeypatch.setattr(gpu_io, "_hwdevices", lambda: None if hwdevices is None else list(hwdevices))
    monkeypatch.setattr(gpu_io, "_probe_encoder", lambda name: encoder_probe)
    monkeypatch.setattr(gpu_io, "_probe_decoder", lambda dev="cuda": decoder_probe)


def test_nvenc_is_picked_when_it_opens(monkeypatch):
    _machine(monkeypatch)
    c = gpu_io.pick_encoder("h264")
    assert (c.name, c.hardware) == ("h264_nvenc", True) and "NVIDIA" in c.describe()
    assert gpu_io.pick_encoder("hevc").name == "hevc_nvenc" == gpu_io.pick_encoder("h265").name
    assert c.options(crf=20) == {"preset": "p4", "rc": "vbr", "b": "0", "cq": "20"}
    assert c.options(preset="p7")["preset"] == "p7" and c.options(preset="veryfast")["preset"] == "p4"


@pytest.mark.parametrize("machine,why", [
    (dict(driver=False), "no NVIDIA driver"),
    (dict(codecs=("libx264",)), "h264_nvenc is not compiled into this FFmpeg"),
    (dict(encoder_probe="h264_nvenc cannot open a session (Operation not permitted)"), "cannot open a session"),
])
def test_x264_is_picked_otherwise_with_the_reason(monkeypatch, machine, why):
    _machine(monkeypatch, **machine)
    c = gpu_io.pick_encoder("h264")
    assert (c.name, c.hardware) == ("libx264", False) and why in c.reason and why in c.describe()
    assert c.options(crf=18) == {"preset": "veryfast", "crf": "18"}
    with pytest.raises(UsageError, match="hardware encoding is not available") as e:
        gpu_io.pick_encoder("h264", prefer="hardware")
    assert why in str(e.value)


def test_software_preference_and_other_codecs_never_probe(monkeypatch):
    _machine(monkeypatch)
    monkeypatch.setattr(gpu_io, "_probe_encoder", lambda name: pytest.fail("probed"))
    monkeypatch.setattr(gpu_io, "_probe_decoder", lambda dev="cuda": pytest.fail("probed"))
    assert gpu_io.pick_encoder("h264", prefer="software").name == "libx264"
    assert gpu_io.pick_decoder(prefer="software").hardware is False
    assert gpu_io.pick_encoder("libsvtav1").name == "libsvtav1"  # an encoder name is used as is
    assert gpu_io.pick_encoder("av1", prefer="software").name == "libsvtav1"
    with pytest.raises(UsageError, match="unknown hardware preference"):
        gpu_io.pick_encoder("h264", prefer="gpu")


def test_missing_software_encoder_is_a_usage_error(monkeypatch):
    _machine(monkeypatch, driver=False, codecs=("libx264",))
    with pytest.raises(UsageError, match="libx265"):
        gpu_io.pick_encoder("hevc")


def test_cuda_decoding_is_picked_when_the_device_opens(monkeypatch):
    _machine(monkeypatch)
    d = gpu_io.pick_decoder()
    assert d.hardware and d.device_type == "cuda" and "NVDEC" in d.describe()
    hw = d.open_kwargs()["hwaccel"]
    assert isinstance(hw, av.codec.hwaccel.HWAccel)


@pytest.mark.parametrize("machine,why", [
    (dict(driver=False), "no NVIDIA driver"),
    (dict(hwdevices=("vaapi",)), "no CUDA hwaccel"),
    (dict(hwdevices=None), "PyAV 14.1 or newer"),  # PyAV 12-14.0: no av.codec.hwaccel
    (dict(decoder_probe="cuda device cannot be opened by FFmpeg (x)"), "cannot be opened"),
])
def test_software_decoding_otherwise_with_the_reason(monkeypatch, machine, why):
    _machine(monkeypatch, **machine)
    d = gpu_io.pick_decoder()
    assert not d.hardware and d.open_kwargs() == {} and why in d.describe()
    with pytest.raises(UsageError, match="hardware decoding is not available"):
        gpu_io.pick_decoder(prefer="hardware")


def test_probes_are_real_and_never_raise():
    assert gpu_io._probe_encoder("libx264") is None  # a software encoder opens anywhere
    assert "cannot open a session" in gpu_io._probe_encoder("no_such_encoder")
    result = gpu_io._probe_decoder("cuda")
    assert result is None or "cuda" in result
    if not gpu_io._driver_present():
        assert result is not None


def test_round_trip_through_the_picks_on_this_machine(tmp_path):
    enc, dec = gpu_io.pick_encoder("h264"), gpu_io.pick_decoder()
    assert gpu_io.describe_video_io().count(";") >= 1
    path = tmp_path / "out.mp4"
    frames = [np.full((96, 128, 3), 40 * i, np.uint8) for i in range(6)]
    with av.open(str(path), "w") as out:
        s = out.add_stream(enc.name, rate=25, options=enc.options(crf=20))
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        for f in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode())
    with av.open(str(path), **dec.open_kwargs()) as c:
        stream = c.streams.video[0]
        got = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        used = gpu_io.decoder_in_use(stream)
    assert len(got) == 6 and got[0].shape == (96, 128, 3)
    assert abs(int(got[5].mean()) - 200) < 6
    assert used.startswith("h264") and (("cuda" in used) == dec.hardware or not dec.hardware)


@pytest.mark.gpu
def test_nvenc_and_nvdec_on_a_gpu_machine(tmp_path):
    if not gpu_io._driver_present():
        pytest.skip("no NVIDIA driver")
    enc = gpu_io.pick_encoder("h264")
    if not enc.hardware:
        pytest.skip(f"NVENC unavailable here: {enc.reason}")
    dec = gpu_io.pick_decoder()
    path = tmp_path / "nvenc.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream(enc.name, rate=25, options=enc.options(crf=23))
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv420p"
        for i in range(10):
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((720, 1280, 3), 20 * i, np.uint8), format="rgb24")))
        out.mux(s.encode())
    with av.open(str(path), **dec.open_kwargs()) as c:
        stream = c.streams.video[0]
        assert sum(1 for _ in c.decode(stream)) == 10
        if dec.hardware:
            assert "cuda" in gpu_io.decoder_in_use(stream)


# -- what really happens on a GPU machine -------------------------------------------------------

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "rainy_dashcam.mp4"


@pytest.mark.parametrize("gpu", ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA H200"])
def test_data_centre_gpus_decode_on_nvdec_but_encode_in_software(monkeypatch, gpu):
    _machine(monkeypatch, gpus=(gpu,))
    monkeypatch.setattr(gpu_io, "_probe_encoder", lambda name: pytest.fail("no NVENC to probe"))
    c = gpu_io.pick_encoder("h264")
    assert (c.name, c.hardware) == ("libx264", False)
    assert gpu in c.describe() and "no NVENC" in c.describe() and "permission" not in c.describe().lower()
    with pytest.raises(UsageError, match="no NVENC"):
        gpu_io.pick_encoder("hevc", prefer="hardware")
    assert gpu_io.pick_decoder().hardware  # NVDEC is there


def test_a_gpu_with_nvenc_is_probed(monkeypatch):
    _machine(monkeypatch, gpus=("NVIDIA L40S",))
    assert gpu_io.pick_encoder("h264").name == "h264_nvenc"


def test_a_cuda_device_that_cannot_open_falls_back_to_software_once(monkeypatch, caplog):
    """On this machine FFmpeg's CUDA device really fails to open (no GPU): PyAV raises EPERM at
    av.open, which io reported as "permission denied" on the user's file."""
    from streamgan.io import Source

    if _real_cuda():
        pytest.skip("a real CUDA device opens here (the gpu-marked test covers NVDEC)")
    _machine(monkeypatch)  # pick_decoder says cuda, as on a GPU machine with NVDEC exhausted
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        for _ in range(2):
            src = Source(SAMPLE, hwaccel="auto", max_frames=3)
            assert len(list(src)) == 3 and src.decoder is None  # decoded in software
            src.close()
    assert caplog.text.count("notice:") == 1 and "decoding in software" in caplog.text
    assert "permission" not in caplog.text.lower()
    with pytest.raises(UsageError, match="hardware decoding is not available: the CUDA decoder could not"):
        Source(SAMPLE, hwaccel="hardware")


def test_a_missing_file_still_reports_itself_with_a_hardware_decoder(monkeypatch, tmp_path):
    from streamgan.errors import InputError
    from streamgan.io import Source

    _machine(monkeypatch)
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(InputError, match="not a video"):
        Source(bad, hwaccel="auto")


def _real_cuda() -> bool:
    return gpu_io._driver_present() and gpu_io._probe_decoder("cuda") is None


class _Ctx:
    def __init__(self, name, is_hwaccel, pix_fmt):
        self.name, self.is_hwaccel, self.pix_fmt = name, is_hwaccel, pix_fmt


def test_is_hwaccel_is_not_taken_for_hardware_decoding(monkeypatch, caplog):
    """A 10-bit H.264 stream has a CUDA context attached but FFmpeg decodes it in software; after
    the first frame only the pixel format tells (``cuda`` for NVDEC frames)."""
    ten_bit = types.SimpleNamespace(codec_context=_Ctx("h264", True, "yuv420p10le"))
    nvdec = types.SimpleNamespace(codec_context=_Ctx("h264", True, "cuda"))
    software = types.SimpleNamespace(codec_context=_Ctx("hevc", False, "yuv420p"))
    assert gpu_io.decoded_in_hardware(ten_bit) is False and gpu_io.decoded_in_hardware(nvdec) is True
    assert "in software" in gpu_io.decoder_in_use(ten_bit) and "yuv420p10le" in gpu_io.decoder_in_use(ten_bit)
    assert gpu_io.decoder_in_use(nvdec) == "h264 on cuda (NVDEC)"
    assert gpu_io.decoder_in_use(software) == "hevc (software)"
    monkeypatch.setattr(gpu_io, "_noticed", set())
    with caplog.at_level(logging.WARNING, logger="streamgan"):
        gpu_io.report_decoder(ten_bit, "cam1")
        gpu_io.report_decoder(ten_bit, "cam1")
        gpu_io.report_decoder(nvdec, "cam2")
    assert caplog.text.count("notice:") == 1 and "cam1" in caplog.text and "cam2" not in caplog.text
