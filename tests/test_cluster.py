"""Issue 13, the batch on a real Ray cluster: a head and a second worker node started here on
127.0.0.1 (``ray start`` subprocesses, token authentication, their own temp folder), torn down at
the end by their process groups. Every wait is bounded.

What a user relies on: every output complete (frame count, timestamps), a corrupt file recorded
while the rest goes on, a Ray worker killed mid-file retried to a complete output with no temp
file left, and a second run that retries only what failed and leaves the rest byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import make_clip, read_video, wait_for

ray = pytest.importorskip("ray")

RAY = Path(sys.executable).parent / "ray"
LEDGER = "streamgan-ledger.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_pytest() -> None:
    """In the ``ray start`` child: SIGTERM when the test process dies (killed by a timeout, say),
    so no Ray node outlives the tests even when the fixture's teardown never runs."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop_group(p: subprocess.Popen) -> None:
    """SIGTERM the process group this test started (ray start --block and what it spawned),
    SIGKILL what is left after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        if wait_for(lambda: not _group_alive(p.pid), wait):
            return


def _group_alive(pgid: int) -> bool:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, env, pids of the ray start processes): a Ray head plus one worker node, one
    CPU each, on 127.0.0.1."""
    if not RAY.exists():
        pytest.skip("the ray command is not installed beside this Python")
    tmp = Path(f"/tmp/sg-ray-{os.getpid()}")  # short: Ray's socket paths have a length limit
    tmp.mkdir(exist_ok=True)
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
              "--disable-usage-stats", "--block"]
    logs = tmp_path_factory.mktemp("raylogs")
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(RAY), "start", "--head", "--port", str(port), "--temp-dir", str(tmp),
             "--include-dashboard", "false", *common], env=env, start_new_session=True,
            preexec_fn=_die_with_pytest, stdout=open(logs / "head.log", "w"),
            stderr=subprocess.STDOUT))
        address = f"127.0.0.1:{port}"
        assert wait_for(lambda: _listening(port) or procs[0].poll() is not None, 60)
        assert procs[0].poll() is None, (logs / "head.log").read_text()
        procs.append(subprocess.Popen(
            [str(RAY), "start", "--address", address, *common], env=env,
            start_new_session=True, preexec_fn=_die_with_pytest,
            stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
        check = ("import ray, time\nray.init(address=%r, logging_level='ERROR')\n"
                 "for _ in range(300):\n"
                 "    if sum(n['Alive'] for n in ray.nodes()) >= 2: break\n"
                 "    time.sleep(0.2)\n"
                 "print(sum(n['Alive'] for n in ray.nodes()))\n" % address)
        r = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.stdout.strip() == "2", r.stderr + (logs / "worker.log").read_text()
        yield address, env, {pr.pid for pr in procs}
    finally:
        for p in reversed(procs):
            _stop_group(p)
        subprocess.run(["rm", "-rf", str(tmp)], timeout=60)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _ledger(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / LEDGER).read_text().splitlines()]


def _outcomes(out: Path) -> list[dict]:
    """The ledger's outcome records (not the ``queued`` line each file gets as it is handed to
    the workers)."""
    return [r for r in _ledger(out) if r["status"] != "queued"]


def _temps(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.streamgan-tmp*"))


def _ray_descendant(pid: int, roots: set[int]) -> bool:
    """``pid`` runs under one of the ``ray start`` processes this test started."""
    while pid > 1:
        if pid in roots:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def _snapshot(paths) -> dict:
    return {p: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def test_batch_on_a_ray_cluster_survives_a_killed_worker(cluster, identity_onnx, udacity_clip,
                                                          tmp_path):
    address, env, roots = cluster
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "real.mp4").symlink_to(udacity_clip)
    clips = [make_clip(src / "a.mp4", frames=12, seed=1),
             make_clip(src / "sub" / "b.mkv", frames=9, seed=2, audio="aac"),
             make_clip(src / "sub" / "vfr.mp4", pts=[0, 40, 80, 200, 240, 400],
                       time_base=Fraction(1, 1000), seed=3)]
    bad = src / "sub" / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx), "--backend",
           "openvino", "--precision", "fp32", str(src), "--out-dir", str(out),
           "--cluster", address]
    p = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    # kill the Ray worker process translating the real clip once it is writing the output
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and p.poll() is None:
        for t in out.glob(".real.identity.*.streamgan-tmp.mp4") if out.exists() else []:
            m = re.match(r".*-(\d+)\.[a-z0-9_]+\.streamgan-tmp\.mp4$", t.name)
            try:
                big = m and t.stat().st_size > 100_000
            except OSError:
                big = False
            if big:
                pid = int(m[1])
                assert _ray_descendant(pid, roots), "the writer is not a Ray worker of this test"
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.02)
    _, err = p.communicate(timeout=240)
    assert killed is not None, err
    assert p.returncode == 7, err
    assert "4 done, 0 skipped (done before), 1 failed" in err, err
    assert f"failed: {bad}:" in err and "2 node(s)" in err
    for s in [src / "real.mp4", *clips]:
        rel = s.relative_to(src)
        dst = out / rel.parent / f"{rel.stem}.identity.mp4"
        a, b = read_video(s), read_video(dst)
        assert len(b["frames"]) == len(a["frames"]) > 0
        assert b["times"] == pytest.approx(a["times"], abs=1e-3)
    assert len(read_video(out / "real.identity.mp4")["frames"]) == 221
    assert not _temps(out)  # the killed writer's temp file was cleaned by the retried task
    recs = {r["input"]: r for r in _ledger(out)}
    assert recs[str(src / "real.mp4")]["status"] == "done"
    assert recs[str(src / "real.mp4")]["frames"] == 221
    assert recs[str(bad)]["status"] == "failed" and recs[str(bad)]["exit_code"] == 3

    # the same command again: only the corrupt file is tried, the rest untouched
    done = sorted(out.rglob("*.mp4"))
    before = _snapshot(done)
    n = len(_outcomes(out))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 7, r.stderr
    assert "0 done, 4 skipped (done before), 1 failed" in r.stderr, r.stderr
    assert [x["input"] for x in _outcomes(out)[n:]] == [str(bad)]
    assert _snapshot(done) == before



def test_sigterm_stops_a_ray_batch_cleanly(cluster, identity_onnx, udacity_clip, tmp_path):
    """SIGTERM to the driver while Ray tasks run: exit 143, the running tasks are cancelled and
    discard their partial files (no temp file, no partial output), the files finished stay and
    the ledger says exactly which."""
    address, env, _ = cluster
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"cam{i}.mp4").symlink_to(udacity_clip)
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "streamgan", "run", "--task", str(identity_onnx),
                          "--backend", "openvino", "--precision", "fp32", str(src), "--out-dir",
                          str(out), "--cluster", address], env=env, stderr=subprocess.PIPE,
                         text=True)
    assert wait_for(lambda: (out / LEDGER).exists()
                    and any(r["status"] == "done" for r in _ledger(out)), 120)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in err
    recs = _ledger(out)
    done = {Path(r["output"]) for r in recs if r["status"] == "done"}
    assert 1 <= len(done) < 4
    assert set(out.glob("*.mp4")) == done
    assert all(len(read_video(o)["frames"]) == 221 for o in done)
    assert not _temps(out)
