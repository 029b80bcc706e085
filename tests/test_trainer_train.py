import csv
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from trainer.cli import main  # noqa: E402
from trainer.options import CheckpointError, Config, ConfigError, DataError  # noqa: E402
from trainer.train import Trainer, load_checkpoint  # noqa: E402

from trainer_helpers import make_images, tiny_config, write_config  # noqa: E402


def _cfg(tmp_path, **over):
    return Config.model_validate(tiny_config(tmp_path, **over))


# Runs with synthesis workers go through the CLI in a process of their own, as users start them: DataLoader
# workers and their teardown stay out of the test process.
_TRAIN = [sys.executable, "-m", "trainer", "train"]
_CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}


def _child(cmd):
    done = subprocess.run(cmd, env=_CHILD_ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_loss_decreases_on_tiny_overfit(tmp_path):
    # Rain12-style streaks only: the tiny net can learn them in a few dozen steps
    cfg = _cfg(tmp_path, optim__steps=60, data__batch_size=4, data__synth_options={"p_streaks_only": 1.0})
    tr = Trainer(cfg)
    first = [tr.train_step()["l1"] for _ in range(8)]
    for _ in range(44):
        tr.train_step()
    last = [tr.train_step()["l1"] for _ in range(8)]
    assert sum(last) / 8 < 0.8 * sum(first) / 8


def test_run_writes_log_plot_samples_checkpoint_and_resume_continues(tmp_path):
    cfg_path = write_config(tmp_path, tiny_config(tmp_path, optim__steps=20))
    assert main(["train", str(cfg_path), "--steps", "10"]) == 0
    run = tmp_path / "run"
    ck = load_checkpoint(run / "latest.pt")  # weights_only=True inside
    assert ck["step"] == 10
    for f in ("log.csv", "losses.png", "summary.json", "samples/step_0000010.png"):
        assert (run / f).exists(), f
    assert main(["train", str(cfg_path), "--resume"]) == 0
    ck2 = load_checkpoint(run / "latest.pt")
    assert ck2["step"] == 20
    assert ck2["wall_time_s"] > ck["wall_time_s"]
    with open(run / "log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [5, 10, 15, 20]
    assert json.loads((run / "summary.json").read_text())["step"] == 20


def test_resume_is_bitwise_the_same_as_one_run(tmp_path):
    a = Trainer(_cfg(tmp_path / "a", optim__steps=6))
    a.run()
    b_cfg = _cfg(tmp_path / "b", optim__steps=6)
    Trainer(b_cfg, max_steps=3).run()
    b = Trainer(b_cfg, resume=True)
    b.run()
    for pa, pb in zip(a.G.parameters(), b.G.parameters()):
        assert torch.equal(pa, pb)


def test_cyclegan_with_warmup_and_gan(tmp_path):
    night = make_images(tmp_path / "night", 2, seed=5)
    cfg = _cfg(tmp_path, mode="cyclegan", task="day2night", data__synth="night", data__train_b=[str(night)],
               loss__lambda_gan=1.0, loss__lambda_l1=1.0, loss__lambda_identity=0.5, loss__lambda_struct=1.0,
               train__warmup_steps=2,
               optim__steps=4)
    tr = Trainer(cfg)
    logs = [tr.train_step() for _ in range(4)]
    assert set(logs[0]) == {"warmup_l1"}
    assert {"cyc_A", "cyc_B", "idt", "G_gan", "D", "l1", "struct"} <= set(logs[-1])
    assert set(tr.nets) == {"G", "F", "D_A", "D_B"}


def test_checkpoint_from_another_architecture(tmp_path):
    cfg = _cfg(tmp_path, optim__steps=2)
    Trainer(cfg).run()
    other = _cfg(tmp_path, optim__steps=4, model__generator__ngf=8)
    with pytest.raises(CheckpointError, match="another architecture"):
        Trainer(other, resume=True)
    before = (tmp_path / "run" / "latest.pt").read_bytes()
    cfg_path = write_config(tmp_path, tiny_config(tmp_path, optim__steps=4, model__generator__ngf=8))
    assert main(["train", str(cfg_path), "--resume"]) == 2
    assert (tmp_path / "run" / "latest.pt").read_bytes() == before  # untouched


def test_a_checkpoint_older_than_an_architecture_option_resumes(tmp_path):
    """Checkpoints written before an option existed (model.generator.out_kernel) resume when the config keeps
    its default; another value is another architecture."""
    import torch

    Trainer(_cfg(tmp_path, optim__steps=2)).run()
    path = tmp_path / "run" / "latest.pt"
    ck = torch.load(path, weights_only=True)
    arch = json.loads(ck["arch"])
    del arch["model"]["generator"]["out_kernel"]
    ck["arch"] = json.dumps(arch, sort_keys=True)
    torch.save(ck, path)
    t = Trainer(_cfg(tmp_path, optim__steps=4), resume=True)
    assert t.step == 2
    with pytest.raises(CheckpointError, match="another architecture"):
        Trainer(_cfg(tmp_path, optim__steps=4, model__generator__out_kernel=3), resume=True)


def test_distilling_from_a_plugin_onnx_starts_at_the_teacher(tmp_path):
    """A teacher given as an ONNX file is the generator whose initializers it holds (for a plugin, the network
    inside its source-resolution wrapper and renderer): a student
    warm-started from the same file starts with no distillation loss; without loss.teacher_generator the
    architecture is unknown, which is an error."""
    import torch

    from trainer.networks import MobileGenerator
    from trainer.options import GeneratorOptions
    from trainer.train import generator_from_checkpoint

    torch.manual_seed(0)
    net = MobileGenerator(4, 1, norm="none", residual=True)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    onnx_path = tmp_path / "teacher.onnx"
    torch.onnx.export(net.eval(), torch.zeros(1, 3, 32, 32), str(onnx_path), opset_version=17, dynamo=False)
    opts = {"kind": "mobile", "ngf": 4, "n_blocks": 1, "norm": "none", "residual": True}
    teacher, _ = generator_from_checkpoint(onnx_path, GeneratorOptions(**opts))
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(teacher(x), net(x), atol=1e-6)
    with pytest.raises(CheckpointError, match="teacher_generator"):
        generator_from_checkpoint(onnx_path)
    cfg = _cfg(tmp_path, optim__steps=1, train__init_generator=str(onnx_path), loss__lambda_distill=1.0,
               loss__teacher=str(onnx_path), loss__teacher_generator=opts, optim__lr=1e-9,
               train__log_every=1)
    Trainer(cfg).run()
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["loss_distill"]) < 1e-5


def test_pickled_checkpoint_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"nets": {}, "arch": "x", "obj": object()}, p)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(p)


def test_bad_config_names_file_and_field(tmp_path, capsys):
    raw = tiny_config(tmp_path)
    raw["optim"]["lr"] = -1
    p = write_config(tmp_path, raw, "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: field 'optim\.lr'"):
        Config.load(p)
    assert main(["train", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "optim.lr" in err and "Traceback" not in err
    raw = tiny_config(tmp_path)
    raw["data"]["unknown_field"] = 1
    with pytest.raises(ConfigError, match="data.unknown_field"):
        Config.load(write_config(tmp_path, raw, "extra.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "missing.yaml")


def test_bad_onnx_and_counts_are_one_error_line(tmp_path, capsys):
    p = write_config(tmp_path, tiny_config(tmp_path))
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    for onnx, says in ((tmp_path / "nope.onnx", "no such ONNX file"), (text, "not an ONNX model")):
        assert main(["eval", str(p), "--onnx", str(onnx), "--out", str(tmp_path / "ev")]) == 2
        err = capsys.readouterr().err
        assert says in err and str(onnx) in err and "Traceback" not in err
    for args in (["quantize", str(p), "--frames", "0"], ["train", str(p), "--steps", "-1"]):
        with pytest.raises(SystemExit) as e:  # argparse: before any work
            main(args)
        assert e.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


def test_missing_and_empty_data_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        Trainer(_cfg(tmp_path, data__train_a=[str(tmp_path / "nope")]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        Trainer(_cfg(tmp_path, data__train_a=[str(tmp_path / "empty")]))


def test_undecodable_image_names_the_file(tmp_path):
    folder = make_images(tmp_path / "imgs", 2)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg"):
        Trainer(_cfg(tmp_path, data__train_a=[str(folder)]))


def test_clean_fraction_leaves_pairs_untouched(tmp_path):
    tr = Trainer(_cfg(tmp_path, data__clean_fraction=1.0))
    inp, tgt, _ = tr._batch()
    assert torch.equal(inp, tgt)
    tr = Trainer(_cfg(tmp_path, data__clean_fraction=0.0))
    inp, tgt, _ = tr._batch()
    assert not torch.equal(inp, tgt)


_WORKER_BATCHES = """
import json, sys, torch
from trainer.options import Config
from trainer.train import Trainer
tr = Trainer(Config.load(sys.argv[1], []))
b = [tr._batch() for _ in range(4)]
print(json.dumps({"shapes": [list(i.shape) + list(t.shape) for i, t, _ in b],
                  "range": [min(float(i.min()) for i, _, _ in b), max(float(i.max()) for i, _, _ in b)],
                  "repeat": torch.equal(b[0][0], b[1][0])}))
"""


def test_worker_processes_make_the_pairs_and_the_run_resumes(tmp_path):
    """data.workers: synthetic pairs come from DataLoader worker processes (GPU runs), each worker drawing
    its own rain; the run trains, checkpoints and resumes with them. Each run is its own process, as a
    user starts it, so the workers start and stop with the trainer and not inside the test process."""
    cfg_path = write_config(tmp_path, tiny_config(tmp_path, data__workers=2, data__batch_size=3, optim__steps=6))
    probe = _child([sys.executable, "-c", _WORKER_BATCHES, str(cfg_path)])
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert got["shapes"] == [[3, 3, 32, 32] * 2] * 4
    assert -1 <= got["range"][0] and got["range"][1] <= 1
    assert not got["repeat"]  # the two workers do not repeat each other
    assert json.loads(_child(_TRAIN + [str(cfg_path)]).stdout.strip().splitlines()[-1])["step"] == 6
    _child(_TRAIN + [str(cfg_path), "--resume", "--set", "optim.steps=9"])
    assert load_checkpoint(tmp_path / "run" / "latest.pt")["step"] == 9


def test_a_checkpoint_before_the_first_log_row_does_not_stop_the_run(tmp_path):
    cfg = _cfg(tmp_path, optim__steps=3, train__log_every=1000, train__checkpoint_every_s=1e-6)
    assert Trainer(cfg).run()["step"] == 3
    assert load_checkpoint(tmp_path / "run" / "latest.pt")["step"] == 3


def test_a_log_that_lost_its_header_keeps_its_rows_when_the_run_resumes(tmp_path):
    cfg_path = write_config(tmp_path, tiny_config(tmp_path, optim__steps=20))
    assert main(["train", str(cfg_path), "--steps", "10"]) == 0
    log = tmp_path / "run" / "log.csv"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[1:]))  # damaged: the header line is gone
    (tmp_path / "run" / "losses.png").unlink()
    assert main(["train", str(cfg_path), "--resume"]) == 0
    assert load_checkpoint(tmp_path / "run" / "latest.pt")["step"] == 20
    with open(log) as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["5", "10", "15", "20"]
    assert (tmp_path / "run" / "losses.png").exists()


def _start_training(tmp_path, **over):
    """A tiny run of many steps in its own process (and process group); returns it once it has logged."""
    from conftest import wait_for

    cfg_path = write_config(tmp_path, tiny_config(tmp_path, optim__steps=1_000_000, train__log_every=2, **over))
    proc = subprocess.Popen(_TRAIN + [str(cfg_path)], env=_CHILD_ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    log = tmp_path / "run" / "log.csv"
    logged = wait_for(lambda: proc.poll() is not None or (log.exists() and len(log.read_text().splitlines()) > 2), 120)
    assert proc.poll() is None, proc.communicate()
    assert logged, "the run logged nothing in 120 s"
    return proc, cfg_path


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C to the group, synthesis in a worker"])
def test_a_stopped_run_checkpoints_and_a_second_trainer_on_its_folder_is_refused(tmp_path, capsys, how):
    """While a run trains, another `train` on the same run folder stops with the run's pid and writes
    nothing. SIGTERM (or Ctrl-C, which reaches the synthesis workers too) ends the run after the step in
    progress with a checkpoint and exit status 128 + signal; `--resume` goes on from that step."""
    import signal

    over = {"data__workers": 1} if how.startswith("Ctrl-C") else {}
    proc, cfg_path = _start_training(tmp_path, **over)
    try:
        config_json = (tmp_path / "run" / "config.json").read_bytes()
        assert main(["train", str(cfg_path), "--steps", "1"]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert (tmp_path / "run" / "config.json").read_bytes() == config_json
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    sig = signal.SIGTERM if how == "SIGTERM" else signal.SIGINT
    assert proc.returncode == 128 + sig, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped_by"] == sig.name and "continue with --resume" in err
    step = load_checkpoint(tmp_path / "run" / "latest.pt")["step"]
    assert step == summary["step"] >= 4
    _child(_TRAIN + [str(cfg_path), "--resume", "--steps", "3"])  # the lock went with the process
    assert load_checkpoint(tmp_path / "run" / "latest.pt")["step"] == step + 3


def test_ema_is_the_running_average_of_the_weights_and_what_export_and_resume_use(tmp_path):
    from trainer.train import generator_state

    cfg = _cfg(tmp_path, optim__steps=4, train__ema=0.5)
    tr = Trainer(cfg)
    expect = [p.detach().clone() for p in tr.G.parameters()]
    for _ in range(2):
        tr.train_step()
        expect = [0.5 * e + 0.5 * p.detach() for e, p in zip(expect, tr.G.parameters())]
    for e, got in zip(expect, tr.G_ema.parameters()):
        torch.testing.assert_close(got, e)
    assert any(not torch.equal(e, p) for e, p in zip(tr.G_ema.parameters(), tr.G.parameters()))
    tr.checkpoint()
    state, _, ck = generator_state(tmp_path / "run" / "latest.pt")  # export, eval and warm starts read this
    assert all(torch.equal(state[k], v) for k, v in tr.G_ema.state_dict().items())
    assert ck["run"]["ema"] == 0.5
    # resumed, the average goes on from where it was (not restarted from G), as in one uninterrupted run
    one = Trainer(_cfg(tmp_path / "one", optim__steps=4, train__ema=0.5))
    one.run()
    Trainer(_cfg(tmp_path / "two", optim__steps=4, train__ema=0.5), max_steps=2).run()
    two = Trainer(_cfg(tmp_path / "two", optim__steps=4, train__ema=0.5), resume=True)
    two.run()
    for a, b in zip(one.G_ema.parameters(), two.G_ema.parameters()):
        assert torch.equal(a, b)


def test_lr_warmup_ramps_then_decays(tmp_path):
    """optim.warmup: the lr rises linearly over the first steps (a warm start is not jolted by Adam's first
    full-size steps), then the usual constant-then-linear decay."""
    from trainer.train import lr_lambda

    cfg = Config.model_validate(tiny_config(tmp_path, optim__steps=100, optim__decay_start=50, optim__warmup=10))
    f = lr_lambda(cfg)
    assert [round(f(s), 3) for s in (0, 4, 9, 10, 49, 75, 100)] == [0.1, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    plain = lr_lambda(Config.model_validate(tiny_config(tmp_path, optim__steps=100, optim__decay_start=50)))
    assert [plain(s) for s in (0, 49, 75)] == [1.0, 1.0, 0.5]
