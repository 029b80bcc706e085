"""Issue 13, many videos in one run on this machine (streamgan/batch.py, docs/BATCH.md).

What a user relies on: every input gets its output at the same relative place under --out-dir with
every frame and timestamp; a bad file is recorded and the batch goes on with a named failure and
exit code 7; a rerun skips what is done (outputs untouched byte for byte) and retries only what
failed; SIGTERM mid-batch keeps the finished files, leaves no partial output and a ledger that
matches the files; bad usage fails with one line, its exit code and nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import error_line, make_clip, read_video, run_cli
from streamgan import errors

LEDGER = "streamgan-ledger.jsonl"


def _ledger(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / LEDGER).read_text().splitlines()]


def _temps(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.streamgan-tmp*"))


def _snapshot(paths) -> dict:
    """Bytes, inode and mtime of each file: a rerun must leave done outputs exactly as they are."""
    return {p: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def _same_video(src: Path, out: Path) -> None:
    a, b = read_video(src), read_video(out)
    assert len(b["frames"]) == len(a["frames"]) > 0, out
    assert b["times"] == pytest.approx(a["times"], abs=1e-3), out
    assert (b["width"], b["height"]) == (a["width"], a["height"])


def _batch(*args, timeout=240):
    return run_cli("run", *args, "--backend", "openvino", "--precision", "fp32", timeout=timeout)


@pytest.fixture
def clips(tmp_path, udacity_clip):
    """A folder with a real clip (linked), small clips in a subfolder, variable frame rate."""
    src = tmp_path / "in"
    (src / "day" / "late").mkdir(parents=True)
    (src / "real.mp4").symlink_to(udacity_clip)
    make_clip(src / "a.mp4", frames=14, seed=1)
    make_clip(src / "day" / "b.mkv", frames=9, seed=2, audio="aac")
    make_clip(src / "day" / "late" / "vfr.mp4", pts=[0, 40, 80, 200, 240, 400],
              time_base=Fraction(1, 1000), seed=3)
    (src / "notes.txt").write_text("not a video, not an input")
    return src


def test_layout_is_kept_and_every_frame_arrives(identity_onnx, clips, tmp_path):
    """A folder, a quoted glob and a named file in one command: outputs keep their relative
    places under --out-dir, named as the single-file form names them, with every frame and
    timestamp; the ledger records each file's frames. The runtime did not import torch or ray."""
    extra = tmp_path / "extra"
    extra.mkdir()
    one = make_clip(extra / "one.mov", frames=7, seed=4)
    make_clip(extra / "two.mp4", frames=5, seed=5)
    out = tmp_path / "out"
    r = _batch("--task", identity_onnx, clips, str(extra / "t*.mp4"), one, "--out-dir", out,
               "--jobs", "2")
    assert r.returncode == 0, r.stderr
    expect = {clips / "real.mp4": out / "real.identity.mp4",
              clips / "a.mp4": out / "a.identity.mp4",
              clips / "day" / "b.mkv": out / "day" / "b.identity.mp4",
              clips / "day" / "late" / "vfr.mp4": out / "day" / "late" / "vfr.identity.mp4",
              extra / "two.mp4": out / "two.identity.mp4",
              one: out / "one.identity.mp4"}
    made = {p for p in out.rglob("*") if p.is_file() and p.name != LEDGER}
    assert made == set(expect.values())
    for src, dst in expect.items():
        _same_video(src, dst)
    assert read_video(out / "day" / "b.identity.mp4")["audio"]  # audio kept as in single runs
    recs = _ledger(out)
    assert {r["input"] for r in recs} == {str(p.absolute()) for p in expect}
    assert all(r["status"] == "done" and r["error"] is None for r in recs)
    frames = {Path(r["output"]).name: r["frames"] for r in recs}
    assert frames["real.identity.mp4"] == 221 and frames["vfr.identity.mp4"] == 6
    total = sum(len(read_video(src)["frames"]) for src in expect)
    assert f"6 done, 0 skipped (done before), 0 failed; {total} frames" in r.stderr
    assert not _temps(out)
    # the Python API, in a fresh process: same report, nothing heavy imported
    code = ("import sys, streamgan; rep = streamgan.translate_many([sys.argv[1]], sys.argv[2], "
            "sys.argv[3], backend='openvino', precision='fp32', jobs=1); "
            "print([f.status for f in rep.files], rep.frames, "
            "'torch' in sys.modules, 'ray' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, str(extra), str(identity_onnx),
                        str(tmp_path / "api")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["['done',", "'done']", "12", "False", "False"]


def test_rerun_skips_done_and_retries_failed(identity_onnx, clips, tmp_path):
    """A corrupt and a missing file are recorded and the batch goes on (exit 7, both named);
    the rerun leaves every done output byte for byte as it was and tries only the failed ones;
    once fixed, the third run does just that file. A changed input is done again."""
    bad = clips / "day" / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    missing = tmp_path / "gone.mp4"
    out = tmp_path / "out"
    r = _batch("--task", identity_onnx, clips, missing, "--out-dir", out, "--jobs", "2")
    assert r.returncode == errors.EXIT_BATCH == 7, r.stderr
    line = error_line(r.stderr)
    assert "2 of 6 files failed" in line and str(bad) in line and str(missing) in line
    assert "4 done, 0 skipped (done before), 2 failed" in r.stderr
    done = sorted(p for p in out.rglob("*.mp4"))
    assert len(done) == 4 and not (out / "day" / "broken.identity.mp4").exists()
    failed = {r["input"]: r for r in _ledger(out) if r["status"] == "failed"}
    assert failed.keys() == {str(bad), str(missing)}
    assert failed[str(bad)]["exit_code"] == errors.EXIT_INPUT and failed[str(bad)]["error"]
    before = _snapshot(done)
    n_lines = len(_ledger(out))

    r = _batch("--task", identity_onnx, clips, missing, "--out-dir", out, "--jobs", "2")
    assert r.returncode == 7, r.stderr
    assert "0 done, 4 skipped (done before), 2 failed" in r.stderr
    assert _snapshot(done) == before
    new = _ledger(out)[n_lines:]
    assert sorted(x["input"] for x in new) == sorted([str(bad), str(missing)])

    make_clip(bad, frames=8, seed=9)  # fixed; and one input changed since it was done
    make_clip(clips / "a.mp4", frames=10, seed=7)
    r = _batch("--task", identity_onnx, clips, "--out-dir", out, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert "2 done, 3 skipped (done before), 0 failed" in r.stderr
    _same_video(bad, out / "day" / "broken.identity.mp4")
    _same_video(clips / "a.mp4", out / "a.identity.mp4")
    assert len(read_video(out / "a.identity.mp4")["frames"]) == 10
    still = [p for p in done if p.name != "a.identity.mp4"]
    assert _snapshot(still) == {p: before[p] for p in still}
    assert not _temps(out)


def test_new_weights_under_the_same_name_redo_the_batch(identity_onnx, tmp_path):
    """The ledger records the model's weights: a model file replaced in place (an adapted plugin
    exported again, say) is not taken for the one that made the outputs."""
    import onnx

    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        make_clip(src / f"c{i}.mp4", frames=5, seed=i)
    model = tmp_path / "fleet.onnx"
    shutil.copy(identity_onnx, model)
    out = tmp_path / "out"
    r = _batch("--task", model, src, "--out-dir", out, "--jobs", "1")
    assert r.returncode == 0 and "2 done, 0 skipped" in r.stderr, r.stderr
    r = _batch("--task", model, src, "--out-dir", out, "--jobs", "1")
    assert r.returncode == 0 and "0 done, 2 skipped" in r.stderr, r.stderr
    m = onnx.load(str(model))
    m.producer_name = "retrained"  # other bytes under the same name
    onnx.save(m, str(model))
    r = _batch("--task", model, src, "--out-dir", out, "--jobs", "1")
    assert r.returncode == 0 and "2 done, 0 skipped" in r.stderr, r.stderr


def test_sigterm_mid_batch_keeps_finished_files(identity_onnx, tmp_path):
    """SIGTERM while files are being translated: exit 143, the files finished stay and are in
    the ledger as done, no partial output or temp file is left, no worker outlives the driver;
    the same command then does only the rest."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        make_clip(src / f"cam{i}.mp4", frames=150, size=(320, 240), seed=i)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx), "--backend",
           "openvino", "--precision", "fp32", str(src), "--out-dir", str(out), "--jobs", "1"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            (out / LEDGER).exists() and _temps(out) and (out / LEDGER).read_text()):
        time.sleep(0.05)
    assert (out / LEDGER).exists(), "the first file never finished"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=150)
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in error_line(err)
    recs = _ledger(out)
    done = {Path(r["output"]) for r in recs if r["status"] == "done"}
    assert 1 <= len(done) < 5
    outputs = set(out.glob("*.mp4"))
    assert outputs == done  # nothing half-written in place of an output
    for o in outputs:
        assert len(read_video(o)["frames"]) == 150
    assert not _temps(out)
    orphans = subprocess.run(["pgrep", "-f", f"--out-dir {out}"], capture_output=True)
    assert orphans.stdout == b""

    before = _snapshot(outputs)
    r = run_cli(*cmd[3:], timeout=360)
    assert r.returncode == 0, r.stderr
    assert f"{5 - len(done)} done, {len(done)} skipped" in r.stderr
    assert _snapshot(outputs) == before
    for i in range(5):
        _same_video(src / f"cam{i}.mp4", out / f"cam{i}.identity.mp4")


def test_bad_batch_usage_fails_with_one_line_and_writes_nothing(identity_onnx, clips, tmp_path):
    """No input matched (3), output folder inside an input folder (4), -o with several inputs
    (2), Ray missing (8) or unreachable (8): one line, the documented code, no folder made."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no videos here")
    out = tmp_path / "out"

    def check(code, *args, env=None, text=None):
        r = run_cli("run", "--task", identity_onnx, "--backend", "openvino", *args,
                    timeout=120, env=env)
        assert r.returncode == code, r.stderr
        line = error_line(r.stderr)
        if text:
            assert text in line, line
        assert not out.exists() and not (clips / "out").exists()
        return line

    check(3, empty, str(tmp_path / "nothing" / "*.mp4"), "--out-dir", out,
          text="no video found in")
    check(4, clips, "--out-dir", clips / "out", text="inside the input folder")
    check(4, str(clips / "**" / "*.mp4"), "--out-dir", clips / "day" / "out",
          text="inside the input folder")
    check(2, clips / "a.mp4", clips / "real.mp4", "-o", tmp_path / "x.mp4", text="--out-dir")
    hide = tmp_path / "noray"
    (hide / "ray").mkdir(parents=True)
    (hide / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    check(8, clips, "--out-dir", out, "--cluster", "ray", env={"PYTHONPATH": str(hide)},
          text="pip install 'streamgan[cluster]'")
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        check(8, clips, "--out-dir", out, "--cluster", address, text="cannot be reached")


def test_a_worker_that_dies_fails_only_its_file(identity_onnx, udacity_clip, tmp_path):
    """A local worker process killed mid-file (out of memory, kill -9): that file is recorded as
    failed, the files after it are still done, exit 7; the rerun does the failed file."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        (src / f"cam{i}.mp4").symlink_to(udacity_clip)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx), "--backend",
           "openvino", "--precision", "fp32", str(src), "--out-dir", str(out), "--jobs", "1"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and p.poll() is None:
        for t in out.glob(".cam0.identity.*.streamgan-tmp.mp4") if out.exists() else []:
            pid = int(t.name.split(".")[3])
            try:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                big = t.stat().st_size > 100_000
            except (OSError, ValueError):
                continue
            if big:
                assert parent == p.pid  # a worker of this batch, nothing else
                os.kill(pid, signal.SIGKILL)
                victim = pid
        time.sleep(0.02)
    _, err = p.communicate(timeout=180)
    assert victim is not None, err
    assert p.returncode == 7, err
    assert "2 done, 0 skipped (done before), 1 failed" in err
    assert "worker process died" in err and str(src / "cam0.mp4") in error_line(err)
    assert not (out / "cam0.identity.mp4").exists()
    assert {o.name for o in out.glob("*.mp4")} == {"cam1.identity.mp4", "cam2.identity.mp4"}
    r = run_cli(*cmd[3:], timeout=360)
    assert r.returncode == 0, r.stderr
    assert "1 done, 2 skipped (done before), 0 failed" in r.stderr
    assert len(read_video(out / "cam0.identity.mp4")["frames"]) == 221
    assert not _temps(out)
