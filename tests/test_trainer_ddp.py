"""The DistributedDataParallel path: two CPU processes on the gloo backend through torchrun."""

import json
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from trainer.train import load_checkpoint  # noqa: E402

from trainer_helpers import make_images, tiny_config, write_config  # noqa: E402


def test_torchrun_two_cpu_processes_gloo(tmp_path):
    night = make_images(tmp_path / "night", 2, seed=3)
    cfg = tiny_config(tmp_path, mode="cyclegan", task="day2night", data__synth="night",
                      data__train_b=[str(night)], loss__lambda_gan=1.0, loss__lambda_l1=1.0,
                      train__warmup_steps=2, optim__steps=5)
    path = write_config(tmp_path, cfg)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", port, "-m", "trainer", "train", str(path)],
                       capture_output=True, text=True, env=env, timeout=110)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["params_in_sync"] is True  # gradients were averaged across both processes
    ck = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert ck["step"] == 5 and ck["world_size"] == 2
