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

from conftest import error_line, make_clip, read_video, run_cli, wait_for
from streamgan import errors

LEDGER = "streamgan-ledger.jsonl"
LOCK = "streamgan-batch.lock"


def _ledger(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / LEDGER).read_text().splitlines()]


def _outcomes(out: Path) -> list[dict]:
    """The ledger's outcome records (not the ``queued`` line each file gets as it is handed to
    the workers)."""
    return [r for r in _ledger(out) if r["status"] != "queued"]


def _has_done(out: Path) -> bool:
    return (out / LEDGER).exists() and any(r["status"] == "done" for r in _outcomes(out))


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


def _cams(tmp_path: Path, identity_onnx, n: int, frames: int) -> tuple[Path, Path, list[str]]:
    """``n`` clips of 320x240 in ``tmp_path/in``; the batch command translating them into
    ``tmp_path/out`` one file at a time: (in, out, command)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        make_clip(src / f"cam{i}.mp4", frames=frames, size=(320, 240), seed=i)
    out = tmp_path / "out"
    return src, out, [sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx),
                      "--backend", "openvino", "--precision", "fp32", str(src), "--out-dir",
                      str(out), "--jobs", "1"]


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
    made = {p for p in out.rglob("*") if p.is_file() and p.name not in (LEDGER, LOCK)}
    assert made == set(expect.values())
    for src, dst in expect.items():
        _same_video(src, dst)
    assert read_video(out / "day" / "b.identity.mp4")["audio"]  # audio kept as in single runs
    recs = _outcomes(out)
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
    n_lines = len(_outcomes(out))

    r = _batch("--task", identity_onnx, clips, missing, "--out-dir", out, "--jobs", "2")
    assert r.returncode == 7, r.stderr
    assert "0 done, 4 skipped (done before), 2 failed" in r.stderr
    assert _snapshot(done) == before
    new = _outcomes(out)[n_lines:]
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
    src, out, cmd = _cams(tmp_path, identity_onnx, 5, 150)
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (_temps(out) and _has_done(out)):
        time.sleep(0.05)
    assert _has_done(out), "the first file never finished"
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


def _alive(pid: int) -> bool:
    """The process runs (a zombie waiting to be reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _writer(temp: Path) -> int:
    """The pid in a temp file's name (.<stem>.<pid>.<random>.streamgan-tmp.mp4)."""
    return int(temp.name.split(".")[-4])


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_killed_driver_takes_its_workers_with_it(identity_onnx, tmp_path):
    """kill -9 of the batch driver (out of memory, a hard stop) while its worker has just
    published a file it had no time to record: the worker dies with the driver instead of going
    on with files nobody records, and the rerun takes the unrecorded output for this batch's
    own (redone, not refused as "exists"): every file done, exit 0, nothing left beside them."""
    src, out, cmd = _cams(tmp_path, identity_onnx, 3, 300)
    with open(tmp_path / "driver.err", "w") as err:
        p = subprocess.Popen(cmd, stderr=err)
    worker = None
    try:
        temps: list = []  # cam0's temp file, kept by name: it may be renamed the moment after
        assert wait_for(lambda: out.exists() and temps.extend(out.glob(".cam0.identity.*")) is None
                        and temps, 120), (tmp_path / "driver.err").read_text()
        os.kill(p.pid, signal.SIGSTOP)  # the driver frozen: the worker finishes cam0 alone
        worker = _writer(temps[0])
        assert _parent(worker) == p.pid  # a worker of this batch, nothing else
        assert wait_for((out / "cam0.identity.mp4").exists, 120)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        assert wait_for(lambda: not _alive(worker), 10), "the worker outlived its driver"
    finally:
        if p.poll() is None:
            p.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)
    recs = _ledger(out) if (out / LEDGER).exists() else []
    assert not [r for r in recs if r["status"] == "done"]  # cam0 was published, not recorded
    time.sleep(6)  # the rerun comes later: the dead worker's temp file is past io's grace time
    r = run_cli(*cmd[3:], timeout=360)
    assert r.returncode == 0, r.stderr
    assert "3 done, 0 skipped (done before), 0 failed" in r.stderr
    assert set(out.glob("*.mp4")) == {out / f"cam{i}.identity.mp4" for i in range(3)}
    for i in range(3):
        _same_video(src / f"cam{i}.mp4", out / f"cam{i}.identity.mp4")
    assert not _temps(out)


def test_a_second_batch_on_the_same_out_dir_is_refused(identity_onnx, tmp_path):
    """Two batches into one --out-dir at once: the second stops at once with exit 4, naming the
    folder and the first batch's pid; the first finishes as if alone (no duplicate outputs, no
    failed record), and once it is over the folder is free again."""
    src, out, cmd = _cams(tmp_path, identity_onnx, 2, 150)
    args = cmd[3:]
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: bool(out.exists() and _temps(out)), 120)
        second = run_cli(*args, timeout=120)
        _, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == errors.EXIT_OUTPUT == 4, second.stderr
    line = error_line(second.stderr)
    assert str(out) in line and f"pid {first.pid}" in line, line
    assert first.returncode == 0, err
    assert "2 done, 0 skipped (done before), 0 failed" in err
    assert set(out.glob("*.mp4")) == {out / "cam0.identity.mp4", out / "cam1.identity.mp4"}
    assert all(r["status"] != "failed" for r in _ledger(out))
    for i in range(2):
        _same_video(src / f"cam{i}.mp4", out / f"cam{i}.identity.mp4")
    r = run_cli(*args, timeout=120)
    assert r.returncode == 0 and "0 done, 2 skipped" in r.stderr, r.stderr


def test_a_ledger_that_is_a_link_or_a_folder_is_refused(identity_onnx, tmp_path):
    """The ledger is never written through a symbolic link (its target could be any file the
    user can write) and a folder in its place is not an internal error: exit 4, one line naming
    it, the link's target untouched and no output written."""
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "c.mp4", frames=5)
    target = tmp_path / "precious.txt"
    target.write_text("not a ledger\n")
    linked, folder = tmp_path / "linked", tmp_path / "folder"
    linked.mkdir()
    (linked / LEDGER).symlink_to(target)
    (folder / LEDGER).mkdir(parents=True)
    for out, what in ((linked, "symbolic link"), (folder, "folder")):
        r = _batch("--task", identity_onnx, src, "--out-dir", out, "--jobs", "1")
        assert r.returncode == errors.EXIT_OUTPUT, r.stderr
        line = error_line(r.stderr)
        assert str(out / LEDGER) in line and what in line, line
        assert not (out / "c.identity.mp4").exists()
    assert target.read_text() == "not a ledger\n"
    assert (linked / LEDGER).is_symlink() and (folder / LEDGER).is_dir()


def test_a_torn_last_ledger_line_does_not_swallow_the_next_record(identity_onnx, tmp_path):
    """A driver killed in the middle of a ledger line: the next run's records still start on a
    line of their own, so the run after it reads them back and skips the file it did."""
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "c.mp4", frames=5)
    out = tmp_path / "out"
    out.mkdir()
    (out / LEDGER).write_text('{"input": "/elsewhere/a.mp4", "status": "do')
    for done, skipped in ((1, 0), (0, 1)):
        r = _batch("--task", identity_onnx, src, "--out-dir", out, "--jobs", "1")
        assert r.returncode == 0, r.stderr
        assert f"{done} done, {skipped} skipped (done before)" in r.stderr, r.stderr


def test_options_a_batch_would_ignore_are_refused(identity_onnx, tmp_path):
    """--keep-partial and the real-time/live options do nothing for a batch: refused with one
    line naming them (exit 2) before anything is written, not silently dropped."""
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "c.mp4", frames=5)
    out = tmp_path / "out"
    for opts in (["--keep-partial"], ["--realtime", "--segment", "2"], ["--drop", "oldest"],
                 ["--max-wait", "0.1"]):
        r = _batch("--task", identity_onnx, src, "--out-dir", out, *opts)
        assert r.returncode == errors.EXIT_USAGE, r.stderr
        line = error_line(r.stderr)
        assert all(o in line for o in opts if o.startswith("--")), line
        assert not out.exists()


def test_never_more_workers_than_files(identity_onnx, tmp_path):
    """--jobs 3 for two files starts two workers, and the summary says so."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        make_clip(src / f"c{i}.mp4", frames=5, seed=i)
    r = _batch("--task", identity_onnx, src, "--out-dir", tmp_path / "out", "--jobs", "3")
    assert r.returncode == 0, r.stderr
    assert "2 local workers" in r.stderr and "3 local workers" not in r.stderr, r.stderr
