"""The input is never overwritten, in any mode; temp files are never taken for a dead run's while
their writer lives (in any PID namespace); names of any valid length, with commas or '%', work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import error_line, make_clip, read_video, run_cli
from streamgan import errors, io


def _digest(path: Path) -> bytes:
    import hashlib

    return hashlib.sha256(path.read_bytes()).digest()


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "in.mp4", frames=8, size=(64, 48))


# every output path of every mode is checked against the input ----------------------------------
@pytest.mark.parametrize("how", ["realtime", "several", "symlink", "hardlink"])
def test_live_modes_refuse_to_write_over_the_input(identity_onnx, clip, tmp_path, how):
    before = _digest(clip)
    target = {"realtime": str(clip), "several": f"{tmp_path / 'other.mp4'},{clip}"}.get(how)
    if how == "symlink":
        (tmp_path / "link.mp4").symlink_to(clip)
        target = str(tmp_path / "link.mp4")
    if how == "hardlink":
        os.link(clip, tmp_path / "hard.mp4")
        target = str(tmp_path / "hard.mp4")
    r = run_cli("run", "--task", identity_onnx, clip, "-o", target, "-y", "--realtime")
    assert r.returncode == errors.EXIT_OUTPUT, r.stderr
    assert "is the input file" in error_line(r.stderr)
    assert _digest(clip) == before
    assert not (tmp_path / "other.mp4").exists()


def test_a_segment_named_like_the_input_is_refused(identity_onnx, tmp_path):
    cam = make_clip(tmp_path / "cam_00000.mp4", frames=8, size=(64, 48))
    before = _digest(cam)
    r = run_cli("run", "--task", identity_onnx, cam, "-o", tmp_path / "cam.mp4", "--segment",
                "1", "-y")
    assert r.returncode == errors.EXIT_OUTPUT, r.stderr
    assert "is the input file" in error_line(r.stderr)
    assert _digest(cam) == before


def test_a_live_recording_replaces_a_link_never_its_target(identity_onnx, clip, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("not a video")
    link = tmp_path / "rec.mp4"
    link.symlink_to(victim)
    r = run_cli("run", "--task", identity_onnx, clip, "-o", link, "-y", "--realtime",
                "--backend", "openvino")
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "not a video"
    assert not link.is_symlink() and len(read_video(link)["frames"]) == 8


def test_serve_with_overwrite_never_records_over_its_input(identity_onnx, clip, tmp_path):
    before = _digest(clip)
    cfg = {"model": str(identity_onnx), "backend": "openvino", "metrics": None,
           "overwrite": True,
           "streams": [{"name": "cam", "input": str(clip), "outputs": [str(clip)]}]}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = run_cli("serve", path, "--duration", "20", timeout=60)
    assert "is the input file" in r.stderr, r.stderr
    assert _digest(clip) == before


# temp files ---------------------------------------------------------------------------------------
_WRITER = """
import os, sys, time
from pathlib import Path
os.getpid = lambda: {pid}  # the pid this writer has in its own PID namespace: dead here
from streamgan import io
print(io.make_temp(Path(sys.argv[1])), flush=True)
time.sleep(60)
"""


def test_a_temp_file_of_a_live_writer_in_another_pid_namespace_is_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    w = subprocess.Popen([sys.executable, "-c", _WRITER.format(pid=dead.pid),
                          str(tmp_path / "out.mp4")], stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(w.stdout.readline().strip())
        assert tmp.exists() and f".{dead.pid}." in tmp.name
        os.utime(tmp, (time.time() - 600, time.time() - 600))  # a writer quiet for minutes
        assert io.clean_stale_temps(tmp_path) == []
        assert tmp.exists()
    finally:
        w.kill()
        w.wait()
    assert io.clean_stale_temps(tmp_path) == [tmp]  # its writer is gone now
    assert not tmp.exists()


def test_long_output_names_within_the_limit_work(identity_onnx, clip, tmp_path):
    out = tmp_path / ("a" * 251 + ".mp4")  # 255 bytes: the longest name a file can have
    r = run_cli("run", "--task", identity_onnx, clip, "-o", out, "--backend", "openvino")
    assert r.returncode == 0, r.stderr
    assert len(read_video(out)["frames"]) == 8
    tmp = io.make_temp(tmp_path / ("é" * 125 + ".mp4"))  # 250 bytes, 2 per character
    assert len(tmp.name.encode()) <= 255 and io._TMP_NAME.match(tmp.name)
    io.discard_temp(tmp)
    # a second result beside a file that appeared meanwhile: <stem>.new.mp4 fits too
    src = io.make_temp(out)
    alt = io.move_to_free_name(src, out, "new")
    assert alt.exists() and len(alt.name.encode()) <= 255 and ".new" in alt.name


# names ----------------------------------------------------------------------------------------------
def test_a_comma_in_an_output_name(identity_onnx, clip, tmp_path):
    r = run_cli("run", "--task", identity_onnx, clip, "-o", str(tmp_path / "take\\,2.mp4"),
                "--backend", "openvino")
    assert r.returncode == 0, r.stderr
    assert len(read_video(tmp_path / "take,2.mp4")["frames"]) == 8
    r = run_cli("run", "--task", identity_onnx, clip, "-o", str(tmp_path / "take,3.mp4"))
    assert r.returncode == errors.EXIT_USAGE
    assert "write \\, for a comma" in error_line(r.stderr)
    assert not list(tmp_path.glob("take*3*"))


def test_a_video_named_with_percent_is_a_file(identity_onnx, tmp_path):
    clip = make_clip(tmp_path / "rain 100%d.mp4", frames=8, size=(64, 48))
    r = run_cli("info", clip)
    assert r.returncode == 0 and "frames    8" in r.stdout, r.stderr
    r = run_cli("run", "--task", identity_onnx, clip, "--backend", "openvino")
    assert r.returncode == 0, r.stderr
    assert len(read_video(tmp_path / "rain 100%d.identity.mp4")["frames"]) == 8
