"""``streamgan-train`` (also ``python -m trainer``): train, resume, export, evaluate, make the sample clip.

    streamgan-train train  configs/train_derain.yaml [--resume] [--steps N] [--set key.path=value ...]
    streamgan-train export configs/train_derain.yaml [--checkpoint runs/derain/latest.pt] [--no-eval]
    streamgan-train eval   configs/train_derain.yaml [--onnx plugins/derain/model.onnx] [--out runs/derain/eval]
    streamgan-train quantize configs/train_derain.yaml [--plugin-dir plugins/derain] [--frames 48]
    streamgan-train sample [--out samples/rainy_dashcam.mp4]
    streamgan-train adapt  --rainy MY_RAINY_CLIPS --clear MY_CLEAR_CLIPS [--out derain-myfleet] [--steps 300] [--int8]
    streamgan-train temporal train  [--run DIR] [--kind network|dropfill] [--resume] [--steps N] [--total N]
    streamgan-train temporal export [--run DIR] --plugin-dir DIR [--no-eval]
    streamgan-train temporal eval   --plugin-dir DIR [--against PLUGIN_DIR] [--out DIR]
    streamgan-train temporal frame  --plugin-dir DIR [--plugin plugins/derain]   (its derain network alone)

Every command takes ``--debug``: without it, third-party log lines, progress bars and warnings (NNCF,
OpenVINO, ONNX, PyTorch) stay off the terminal (``trainer/quiet.py``).

Errors the user can fix (bad config, missing data, bad checkpoint, a run folder another training process is
writing) print one line and exit with status 2. A training run stopped with SIGTERM or Ctrl-C writes its
checkpoint and exits with 128 + the signal's number (143, 130), as a shell reports such an end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from streamgan.cli import _positive_int  # the same check as the streamgan command's

from . import make_sample
from .options import REPO, USER_ERRORS, Config
from .quiet import add_debug_flag, configure


def _exit_status(result: dict) -> int:
    """0, or 128 + the signal's number for a run a signal stopped (as a shell reports such an end)."""
    return 128 + int(getattr(signal, result["stopped_by"])) if "stopped_by" in result else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamgan-train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train from a YAML config")
    t.add_argument("config")
    t.add_argument("--resume", action="store_true", help="continue from <train.out>/latest.pt")
    t.add_argument("--steps", type=_positive_int, default=None, help="stop after this many more steps")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    e = sub.add_parser("export", help="export the generator to ONNX into the plugin folder, with card.yaml")
    e.add_argument("config")
    e.add_argument("--checkpoint", default=None)
    e.add_argument("--plugin-dir", default=None)
    e.add_argument("--no-eval", action="store_true", help="skip the evaluation (card without metrics)")
    e.add_argument("--force", action="store_true", help="replace the plugin even if the new model scores worse")
    e.add_argument("--no-quantize", action="store_true", help="skip the int8 model (streamgan-train quantize later)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v = sub.add_parser("eval", help="evaluate a checkpoint or ONNX file; JSON report and contact sheet")
    v.add_argument("config")
    v.add_argument("--checkpoint", default=None)
    v.add_argument("--onnx", default=None)
    v.add_argument("--out", default=None)
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    q = sub.add_parser("quantize", help="(re)make the plugin's int8 model (NNCF) and record it in its card")
    q.add_argument("config")
    q.add_argument("--plugin-dir", default=None, help="default: the config's export.plugin_dir")
    q.add_argument("--frames", type=_positive_int, default=48, help="calibration frames from the training pools")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s = sub.add_parser("sample", help="make samples/rainy_dashcam.mp4 from the MIT Udacity clip")
    make_sample.add_arguments(s)
    a = sub.add_parser("adapt", help="fine-tune the shipped derain model on your own rainy and clear clips")
    a.add_argument("--rainy", nargs="+", required=True, help="videos, images or folders of real rainy footage")
    a.add_argument("--clear", nargs="+", required=True, help="videos, images or folders of clear footage")
    a.add_argument("--out", default="derain-adapted", help="new plugin folder (must not exist)")
    a.add_argument("--plugin", default="derain", help="plugin to start from (task name or folder)")
    a.add_argument("--steps", type=_positive_int, default=300)
    a.add_argument("--int8", action="store_true",
                   help="also make an int8 model (NNCF, gated on the public benchmarks; minutes more)")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    tm = sub.add_parser("temporal", help="the temporal derain model (trainer/temporal.py): train, export, evaluate")
    tm.add_argument("action", choices=["train", "export", "eval", "frame"])
    tm.add_argument("--run", default="~/.cache/streamgan/runs/derain_temporal", help="the run's folder")
    tm.add_argument("--kind", choices=["network", "dropfill"], default="network",
                    help="a new run's model: the generator with temporal input, or a drop finder and fill")
    tm.add_argument("--resume", action="store_true")
    tm.add_argument("--steps", type=_positive_int, default=None, help="stop after this many more steps")
    tm.add_argument("--total", type=_positive_int, default=None, help="the run's length in steps")
    tm.add_argument("--plugin-dir", default=None)
    tm.add_argument("--no-eval", action="store_true")
    tm.add_argument("--against", default=None, help="the plugin to compare with (default: the shipped derain's network alone, frame by frame)")
    tm.add_argument("--out", default=None, help="where eval writes its report, videos and sheets")
    tm.add_argument("--plugin", default=str(REPO / "plugins" / "derain"),
                    help="frame: the drop-fill plugin whose derain network is written alone, frame by frame")
    for cmd in sub.choices.values():
        add_debug_flag(cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure(args.debug)
    try:
        if args.cmd == "sample":
            return make_sample.run(args)
        if args.cmd == "adapt":
            from .adapt import adapt

            res = adapt(args.rainy, args.clear, args.out, args.plugin, args.steps, args.set,
                        log=lambda m: print(m, file=sys.stderr), int8=args.int8)
            print(json.dumps(res, indent=2))
            return _exit_status(res)
        if args.cmd == "temporal":
            return _temporal(args)
        cfg = Config.load(args.config, args.set)
        if args.cmd == "train":
            from .train import Trainer

            summary = Trainer(cfg, args.config, resume=args.resume, max_steps=args.steps).run()
            if summary.get("world_size", 1) == 1 or int(os.environ.get("RANK", "0")) == 0:
                print(json.dumps(summary))
            if "stopped_by" in summary:
                print(f"streamgan-train: stopped by {summary['stopped_by']} at step {summary['step']}; "
                      f"checkpoint {Path(cfg.train.out) / 'latest.pt'}; continue with --resume", file=sys.stderr)
            return _exit_status(summary)
        elif args.cmd == "export":
            from .export import export_plugin

            print(json.dumps(export_plugin(cfg, args.config, args.checkpoint, args.plugin_dir,
                                           evaluate=not args.no_eval, force=args.force,
                                           quantize=not args.no_quantize), indent=2))
        elif args.cmd == "quantize":
            from .quantize import quantize_plugin

            print(json.dumps(quantize_plugin(cfg, args.plugin_dir, args.frames,
                                             log=lambda m: print(m, file=sys.stderr)), indent=2))
        elif args.cmd == "eval":
            from .evaluate import evaluate

            print(json.dumps(evaluate(cfg, checkpoint=args.checkpoint, onnx=args.onnx, out=args.out), indent=2))
    except USER_ERRORS as e:
        print(f"streamgan-train: error: {e}", file=sys.stderr)
        return 2
    return 0


def _temporal(args) -> int:
    from . import temporal, video_eval

    if args.action == "train":
        res = temporal.train(args.run, None if args.resume else temporal.preset(args.kind), resume=args.resume,
                             max_steps=args.steps, total=args.total)
        print(json.dumps(res))
        return 128 + int(signal.SIGINT if res["stopped"] == "interrupt" else signal.SIGTERM) if res["stopped"] else 0
    if not args.plugin_dir:
        raise SystemExit(f"streamgan-train temporal {args.action}: --plugin-dir is needed")
    if args.action == "frame":
        print(json.dumps({"plugin_dir": str(temporal.export_frame_model(args.plugin, args.plugin_dir))}, indent=2))
    elif args.action == "export":
        print(json.dumps(video_eval.export_evaluated(args.run, args.plugin_dir, scored=not args.no_eval,
                                                   against=args.against), indent=2))
    else:
        print(json.dumps(video_eval.evaluate(args.plugin_dir, args.out or str(Path(args.run).expanduser() / "eval"),
                                           against=args.against), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
