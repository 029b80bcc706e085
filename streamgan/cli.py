"""The ``streamgan`` command line: thin wrappers over the public API.

Every ``StreamganError`` becomes one line on stderr and its exit code (see ``errors.py`` and the
README); a traceback is printed only with ``--debug``. Everything printed (errors, tracebacks,
logs) goes through ``io.redact``, so no credential in a URL reaches the terminal. SIGTERM and
SIGHUP stop a run the way Ctrl-C does (outputs finalised), exiting 128 + the signal.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import traceback
from pathlib import Path

from . import errors
from .errors import StreamganError, UsageError

log = logging.getLogger("streamgan")

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "rainy_dashcam.mp4"
EPILOG = """exit codes: 0 ok, 1 internal error, 2 bad usage, 3 bad input, 4 output not writable,
5 model/plugin problem, 6 backend unavailable, 7 some files of a batch failed, 8 Ray cluster
unavailable, 130 interrupted by Ctrl-C, 143 stopped by SIGTERM (129 SIGHUP; the output so far is
kept)"""


def _positive_int(v: str) -> int:
    n = int(v)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return n


def _size(v: str):
    """--size: a positive short side, or 'auto' (live runs: streamgan/autosize.py)."""
    return "auto" if v == "auto" else _positive_int(v)


def _no_auto_size(args) -> None:
    if getattr(args, "size", None) == "auto" or getattr(args, "min_size", None) is not None:
        raise UsageError("--size auto (and --min-size) are for live runs: a camera or stream URL "
                         "input, or a file with --realtime; give a short side in pixels otherwise")


def _seconds(v: str) -> float:
    """'12.5', '90' or '1:30' / '0:01:30' -> seconds."""
    try:
        parts = [float(p) for p in v.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {v} (use seconds or [h:]m:s)") from None
    t = 0.0
    for p in parts:
        t = t * 60 + p
    if not math.isfinite(t):
        raise argparse.ArgumentTypeError(f"not a time: {v} (use seconds or [h:]m:s)")
    if t < 0:
        raise argparse.ArgumentTypeError(f"time must not be negative: {v}")
    return t


def _positive_seconds(v: str) -> float:
    t = _seconds(v)
    if t <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 s, got {v}")
    return t


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary lines (warnings and errors still print)")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--backend", default="auto",
                   help="auto (TensorRT > PyTorch CUDA > OpenVINO > ONNX Runtime), tensorrt, "
                        "torch, openvino, onnxruntime")
    g.add_argument("--precision", default="auto",
                   help="auto (bf16 on CPUs with it, fp16 on GPUs, the card's int8 model on CPUs "
                        "with VNNI/AMX where it passed its gate), fp32 (exact), bf16, fp16, int8")
    g.add_argument("--size", type=_size, default=None,
                   help="run the model at this short side (default: the model card's policy); "
                        "live runs: auto lowers it while the model cannot keep up with the camera "
                        "(not below --min-size) and raises it again when it can")
    g.add_argument("--tile", type=_positive_int, default=None,
                   help="process frames larger than this in overlapping tiles")
    g.add_argument("--batch", type=_positive_int, default=None, help="frames per engine call")
    g.add_argument("--night-exposure", default=None, metavar="NAME",
                   help="day2night: dashcam (default: as dark as an ordinary dashcam records night, "
                        "the road lit by the car's own headlights) or bright (a camera that gains "
                        "night up)")


def _add_translate(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="+",
                   help="video file, image folder, image pattern (%%04d.png) or URL; with "
                        "--out-dir: any number of videos, folders (searched for videos) and "
                        "quoted glob patterns ('clips/**/*.mp4')")
    p.add_argument("-o", "--output", help="output video or image (default: <input stem>.<task>.mp4 beside the "
                        "input; for one image, an image of its type)")
    p.add_argument("-y", "--overwrite", action="store_true", help="overwrite an existing output")
    p.add_argument("--keep-partial", action="store_true",
                   help="with -y, let an interrupted run replace the existing output with its "
                        "partial result (default: the partial goes to <output>.partial.<ext>)")
    _add_model_options(p)
    g = p.add_argument_group("encoding")
    g.add_argument("--codec", default=None,
                   help="h264 (default; VP9 for .webm), h265, av1, vp9, or an FFmpeg encoder")
    g.add_argument("--crf", type=int, default=None,
                   help="quality, lower is better (x264/x265: 0-51, VP9/AV1: 0-63)")
    g.add_argument("--preset", default=None,
                   help="encoder preset (x264/x265: ultrafast..placebo, default veryfast; "
                        "SVT-AV1: -1..13)")
    g.add_argument("--exact-size", action="store_true",
                   help="keep an odd frame size exactly (yuv444p, which many players cannot "
                        "play) instead of padding it by one pixel to 4:2:0")
    g.add_argument("--audio", choices=("copy", "aac", "none"), default="copy",
                   help="copy audio when the container allows (default), re-encode, or drop")
    g.add_argument("--hwaccel", choices=("auto", "hardware", "software"), default="auto",
                   help="NVDEC decoding / NVENC encoding when an NVIDIA GPU can (default auto)")
    g.add_argument("--compare", action="store_true",
                   help="write a side-by-side video: input left, output right")
    g = p.add_argument_group("trimming")
    g.add_argument("--start", type=_seconds, default=0.0, help="start time (s or m:s)")
    g.add_argument("--duration", type=_seconds, default=None, help="duration (s or m:s)")
    g.add_argument("--frames", type=_positive_int, default=None, help="at most this many frames")
    g.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                   help="refuse inputs whose frames have more pixels than this, before decoding "
                        "them (default 40000000, about 8K; or STREAMGAN_MAX_PIXELS)")
    _add_batch_options(p)
    _add_live_options(p)
    _add_common(p)


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    """Many inputs at once (streamgan/batch.py, docs/BATCH.md)."""
    g = p.add_argument_group("batch (several inputs; see docs/BATCH.md)")
    g.add_argument("--out-dir", metavar="DIR",
                   help="translate every input into DIR, keeping their relative layout; a "
                        "ledger there lets a rerun skip the files done and retry the failed")
    g.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help="files at once in local worker processes (default: one per GPU, or one "
                        "per CPU core)")
    g.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="backend CPU threads per file (default: cores / jobs; 1 on a cluster)")
    g.add_argument("--per-gpu", type=_positive_int, default=1, metavar="N",
                   help="files sharing one GPU (default 1)")
    g.add_argument("--cluster", metavar="ADDRESS",
                   help="run the files as Ray tasks: ray (start Ray here), auto (join this "
                        "machine's cluster), ray://HOST:PORT or HOST:PORT")


def _add_live_options(p: argparse.ArgumentParser) -> None:
    """Live inputs/outputs and real-time mode (streamgan/live.py, docs/LIVE.md)."""
    g = p.add_argument_group("live (rtsp://, rtmp://, srt://, HLS .m3u8, /dev/videoN; "
                             "-o takes a comma-separated list: rtsp://host/out,rec.mp4)")
    g.add_argument("--realtime", action="store_true",
                   help="pace a file by its timestamps like a camera (always on for live inputs)")
    g.add_argument("--drop", choices=("oldest", "block"), default=None,
                   help="when translation falls behind: drop the oldest waiting frame (default "
                        "for live inputs) or block the reader (default for files)")
    g.add_argument("--max-wait", type=float, default=None, metavar="SECONDS",
                   help="longest a batch waits to fill in real-time mode (default 0: a batch "
                        "takes the frames already waiting, never waits for more)")
    g.add_argument("--segment", type=_positive_seconds, default=None, metavar="SECONDS",
                   help="record files in segments of this length, each playable on its own")
    g.add_argument("--rtsp-transport", choices=("tcp", "udp"), default="tcp",
                   help="RTSP transport for input and publishing (default tcp)")
    g.add_argument("--stall-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="a live input with no frame for this long is reconnected (default 10)")
    g.add_argument("--min-size", type=_positive_int, default=None, metavar="PIXELS",
                   help="with --size auto: the smallest short side the model may run at "
                        "(default 0.6 of where it starts)")


def build_parser(tasks: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamgan", description="Clean and restyle driving video with GAN generators.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"streamgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for task in tasks:
        p = sub.add_parser(task, help=f"translate a video with the '{task}' model", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_translate(p)
        p.set_defaults(func=cmd_translate, task=task)
    p = sub.add_parser("run", help="translate a video with any task or .onnx model")
    p.add_argument("--task", required=True, help="task name, plugin folder or .onnx file")
    _add_translate(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("models", help="list installed model plugins and their cards")
    p.add_argument("--verbose", "-v", action="store_true", help="print whole cards")
    _add_common(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="probe a video: container, codec, size, rate, frames, audio")
    p.add_argument("input")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("bench", help="measure decode, encode, model and end-to-end fps")
    p.add_argument("input", nargs="?", default=str(SAMPLE), help="clip to measure on")
    p.add_argument("--task", default="derain", help="task, plugin folder or .onnx (default derain)")
    p.add_argument("--backend", default="openvino", help="comma-separated backends to compare")
    p.add_argument("--precision", default="auto", help="comma-separated precisions")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes for model-only")
    p.add_argument("--resolution", default="640x360", help="comma-separated WxH list")
    p.add_argument("--size", type=_positive_int, default=None, help="model short side override")
    p.add_argument("--night-exposure", default=None, metavar="NAME",
                   help="day2night: dashcam (default) or bright")
    p.add_argument("--frames", type=_positive_int, default=200, help="frames per run (at least 10)")
    p.add_argument("--iters", type=_positive_int, default=40, help="model-only calls per run")
    p.add_argument("--reps", type=_positive_int, default=3, help="repetitions (median reported)")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--plot", help="write a PNG of fps against resolution per backend")
    p.add_argument("--baseline", action="store_true",
                   help="also run the naive cv2 + eager PyTorch baseline, alternating")
    p.add_argument("--baseline-frames", type=_positive_int, default=30,
                   help="frames per naive-baseline run (it is slow; default 30)")
    _add_common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("compile", help="build (or refresh) a cached TensorRT engine for a model")
    from .engines import trt_build

    trt_build.add_compile_arguments(p)
    _add_common(p)
    p.set_defaults(func=trt_build.run_compile)

    p = sub.add_parser("serve", help="translate several live streams in one process")
    p.add_argument("config", help="YAML config (see configs/serve_example.yaml)")
    p.add_argument("--duration", type=_positive_seconds, default=None, help="stop after this long")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    _add_common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("gst-env", help="print the exports that let GStreamer load the "
                       "streamgan element: eval \"$(streamgan gst-env)\"")
    _add_common(p)
    p.set_defaults(func=cmd_gst_env)

    p = sub.add_parser("backends", help="which inference backends can run here")
    _add_common(p)
    p.set_defaults(func=cmd_backends)
    return parser


def default_output(src: str, task: str) -> Path:
    p = Path(src)
    if "://" in src:
        raise UsageError("give -o OUTPUT for a URL input")
    from .io import IMAGE_EXTS, IMAGE_FORMATS

    stem = p.name if p.is_dir() else p.stem if p.is_file() else p.stem.replace("%", "")
    ext = ".mp4"
    if p.is_file() and p.suffix.lower() in IMAGE_EXTS:  # one image in, one image out
        ext = p.suffix.lower() if p.suffix.lower() in IMAGE_FORMATS else ".png"
    return p.parent / f"{stem}.{Path(task).stem}{ext}"


def _read_once(src: str) -> bool:
    """A pipe or a device gives its data once: it is opened once, by the translation itself."""
    import stat

    try:
        return not stat.S_ISREG(os.stat(src).st_mode) and not os.path.isdir(src)
    except OSError:
        return False


def cmd_translate(args) -> int:
    if args.max_pixels:  # read by io.max_pixels, in this process and in batch workers
        os.environ["STREAMGAN_MAX_PIXELS"] = str(args.max_pixels)
    inputs = args.input
    if args.out_dir is not None or len(inputs) > 1 or args.cluster or args.jobs:
        return cmd_batch(args)
    args.input = inputs[0]
    if _wants_live(args):  # live input/outputs or real-time mode: streamgan/live.py
        return cmd_live(args)
    _no_auto_size(args)
    from .io import EncodeOptions
    from .translator import Translator

    from .io import IMAGE_FORMATS, Source, check_input, check_output
    from .outputs import split_targets

    # everything that can be checked without the model first: a mistake fails at once (the input
    # opened once: one FFmpeg cannot read, a --start past its end, a folder of mixed sizes)
    check_input(args.input)
    net = args.stall_timeout if "://" in args.input else None  # a URL's reads are bounded
    if not _read_once(args.input):
        Source(args.input, start=args.start, duration=args.duration, timeout=net).close()
    out = Path(split_targets(args.output)[0]) if args.output else \
        default_output(args.input, args.task)
    check_output(out, args.overwrite, src=args.input)
    enc = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, audio=args.audio,
                        hardware=args.hwaccel, exact_size=args.exact_size)
    image_out = out.suffix.lower() in IMAGE_FORMATS
    choice = None if image_out else enc.choice(out.suffix)
    tr = Translator(args.task, args.backend, args.precision, size=args.size, tile=args.tile,
                    batch_size=args.batch, hwaccel=args.hwaccel,
                    night_exposure=args.night_exposure)
    if not args.quiet:
        what = f"image {out.suffix[1:]}" if choice is None else choice.describe()
        print(f"streamgan: {tr.describe()}; {what}", file=sys.stderr)
    res = tr.translate_video(args.input, out, overwrite=args.overwrite, encode=enc,
                             start=args.start, duration=args.duration, frames=args.frames,
                             compare=args.compare, progress=not args.quiet,
                             keep_partial=args.keep_partial, timeout=net)
    if not args.quiet:
        print(f"streamgan: wrote {res.output} ({res.frames} frame{'s' * (res.frames != 1)}, {res.fps:.1f} fps"
              + (f", {res.bad_frames} damaged or missing" if res.bad_frames else "") + ")",
              file=sys.stderr)
    return errors.EXIT_OK


def _wants_live(args) -> bool:
    """Whether a translate command goes through the live path (streamgan/live.py)."""
    from .live import is_live
    from .outputs import is_stream_target, split_targets

    targets = split_targets(getattr(args, "output", None))
    return bool(is_live(args.input) or getattr(args, "realtime", False)
                or getattr(args, "segment", None) or len(targets) > 1
                or getattr(args, "drop", None) or getattr(args, "max_wait", None) is not None
                or any(is_stream_target(t) for t in targets))


def cmd_live(args) -> int:
    """``streamgan <task> INPUT -o OUT[,OUT...] [--realtime ...]`` for live inputs/outputs."""
    from .io import EncodeOptions, check_input, redact
    from .live import LiveOptions, is_live, resolve, run
    from .outputs import make_outputs, split_targets
    from .pipeline import Progress
    from .translator import Translator

    if not is_live(args.input):
        check_input(args.input)  # a missing file fails before the model is loaded
    targets = split_targets(args.output)
    if not targets:
        raise UsageError("give -o OUTPUT (a file, rtsp://... to publish, or several, "
                         "comma-separated) for a live input")
    if getattr(args, "compare", False):
        raise UsageError("--compare is for files, not live runs")
    if args.start and is_live(args.input):
        raise UsageError("--start cannot seek in a live input")
    auto = args.size == "auto"
    options = LiveOptions(realtime=args.realtime or None, drop=args.drop,
                          max_wait=args.max_wait, rtsp_transport=args.rtsp_transport,
                          stall_timeout=args.stall_timeout, auto_size=auto,
                          min_size=args.min_size).check()
    realtime, drop = resolve(options, args.input)
    if auto and not realtime:
        _no_auto_size(args)
    enc = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, audio="none",
                        hardware=getattr(args, "hwaccel", "auto"),
                        exact_size=getattr(args, "exact_size", False))
    outs = make_outputs(targets, encode=enc, segment=args.segment, overwrite=args.overwrite,
                        rtsp_transport=args.rtsp_transport,
                        src=args.input)  # file checks before the model
    kw = {"hwaccel": args.hwaccel} if hasattr(args, "hwaccel") else {}
    tr = Translator(args.task, args.backend, args.precision, size=None if auto else args.size,
                    tile=args.tile, batch_size=args.batch, night_exposure=args.night_exposure, **kw)
    if not args.quiet:
        print(f"streamgan: {tr.describe()}; {redact(args.input)} -> "
              f"{', '.join(o.name for o in outs.outputs)}"
              f"{' (real time, drop ' + drop + ')' if realtime else ''}", file=sys.stderr)
    bar = Progress(None, enabled=not args.quiet, label=tr.task)
    # Ctrl-C, SIGTERM and SIGHUP (KeyboardInterrupt, see cli.stop_signals) end a live run the
    # normal way: outputs finalised, segments closed, exit 0
    res = run(tr, args.input, outs, options, frames=args.frames, duration=args.duration,
              start=args.start, progress=bar)
    bar.finish()
    if not args.quiet:
        for line in res.lines():
            print(f"streamgan: {line}", file=sys.stderr)
    return errors.EXIT_OK


def cmd_batch(args) -> int:
    from . import batch
    from .errors import BatchError, Interrupted
    from .io import EncodeOptions

    _no_auto_size(args)
    if args.out_dir is None:
        raise UsageError("several inputs (or --jobs, --cluster) need --out-dir DIR; -o names "
                         "the output of a single input")
    if args.output:
        raise UsageError("-o names the output of a single input; with --out-dir the outputs "
                         "are named after their inputs")
    if args.keep_partial:
        raise UsageError("--keep-partial does not apply to a batch (--out-dir): a stopped batch "
                         "discards its partial files and the next run does them again")
    live = [name for name, given in (
        ("--realtime", args.realtime), ("--drop", args.drop is not None),
        ("--max-wait", args.max_wait is not None), ("--segment", args.segment is not None))
        if given]
    if live:
        raise UsageError(f"{', '.join(live)} cannot be used with --out-dir: real-time pacing and "
                         "segmented recording are for one input at a time")
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be more than 0 s (got {args.duration:g})")
    enc = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, audio=args.audio,
                        hardware=args.hwaccel, exact_size=args.exact_size)
    say = (lambda line: None) if args.quiet else \
        (lambda line: print(f"streamgan: {line}", file=sys.stderr))
    try:
        report = batch.translate_many(
            args.input, args.task, args.out_dir, jobs=args.jobs, cluster=args.cluster,
            backend=args.backend, precision=args.precision, size=args.size, tile=args.tile,
            batch_size=args.batch, threads=args.threads, per_gpu=args.per_gpu,
            hwaccel=args.hwaccel, night_exposure=args.night_exposure, encode=enc,
            overwrite=args.overwrite, start=args.start,
            duration=args.duration, frames=args.frames, compare=args.compare,
            progress=not args.quiet, on_start=say)
    except Interrupted as e:
        for line in e.report.summary():
            say(line)
        raise
    for line in report.summary():
        say(line)
    if report.failed:
        names = ", ".join(str(f.input) for f in report.failed[:5])
        more = f" and {len(report.failed) - 5} more" if len(report.failed) > 5 else ""
        raise BatchError(f"{len(report.failed)} of {len(report.files)} files failed: "
                         f"{names}{more} (reasons in {report.ledger})")
    return errors.EXIT_OK


def cmd_serve(args) -> int:
    from . import serve

    return serve.cli_run(args)


def cmd_models(args) -> int:
    import yaml

    from .plugins import discover, load_folder

    found = discover()
    if not found:
        print("no model plugins installed")
        return errors.EXIT_OK
    for task, folder in sorted(found.items()):
        try:
            m = load_folder(folder)
        except StreamganError as e:
            print(f"{task:12s} BROKEN: {e}")
            continue
        c = m.card
        p = c.processing
        res = "native" if p.policy == "native" else f"short side {p.short_side}"
        int8 = ("none" if c.int8 is None else "passed its quality gate" if c.int8.passed
                else "did not pass its quality gate (--precision auto leaves it out)")
        temporal = "; temporal (a state per stream)" if c.temporal else ""
        ne = c.night_exposure
        night = (f"; --night-exposure {' or '.join(ne.names)} (default {ne.default})" if ne else "")
        print(f"{task:12s} {c.title} [{c.direction}] version {c.version}; {c.architecture}, runs at {res}"
              f"{temporal}{night}; int8 model: {int8}; licence {c.licence}; {folder}")
        for name, about in (ne.about.items() if ne else ()):
            print(f"{'':12s}   night exposure {name}: {about}")
        if args.verbose:
            print("  " + yaml.safe_dump(c.model_dump(mode="json"), sort_keys=False)
                  .replace("\n", "\n  "))
    return errors.EXIT_OK


def cmd_info(args) -> int:
    from .io import probe

    for line in probe(args.input).lines():
        print(line)
    return errors.EXIT_OK


def cmd_bench(args) -> int:
    from . import bench

    bench.run(args)
    return errors.EXIT_OK


def cmd_gst_env(args) -> int:
    from .gstreamer import env_lines, loader_python_mismatch

    why = loader_python_mismatch()
    if why:
        log.warning("notice: %s", why)
    print("\n".join(env_lines()))
    return errors.EXIT_OK


def cmd_backends(args) -> int:
    from .engines import auto_choice, available

    for name, state in available().items():
        print(f"{name:12s} {state}")
    print(f"auto choice: {auto_choice()}")
    return errors.EXIT_OK


def _tasks() -> list[str]:
    from .plugins import discover

    try:
        return sorted(discover())
    except Exception:
        return []


@contextlib.contextmanager
def stop_signals():
    """SIGTERM and SIGHUP (docker stop, systemd, a closed terminal) raise ``errors.Terminated``
    in the main thread, a ``KeyboardInterrupt``: every command finalises its outputs as on
    Ctrl-C. Only the first signal interrupts; the ones after it wait for the clean-up."""
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise errors.Terminated(signum)

    old = {}
    try:
        for n in names:
            old[n] = signal.signal(getattr(signal, n), handler)
    except ValueError:  # not the main thread (main() called from a worker): leave them
        pass
    try:
        yield
    finally:
        for n, h in old.items():
            signal.signal(getattr(signal, n), h)


def _print_traceback() -> None:
    from .io import redact

    print(redact(traceback.format_exc()), end="", file=sys.stderr)


class _Formatter(logging.Formatter):
    """'streamgan: WARNING: ...'; a notice (a fallback the run made, said once) is 'streamgan: notice: ...'."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"streamgan: {text}" if text.startswith("notice: ") else f"streamgan: {record.levelname}: {text}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    from .io import RedactFilter, redact

    for h in logging.getLogger().handlers:  # third-party log lines are redacted too
        h.setFormatter(_Formatter())
        h.addFilter(RedactFilter())
    tasks = sorted(set(_tasks()) | {"derain", "day2night"})
    parser = build_parser(tasks)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and errors.EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return errors.EXIT_USAGE
    try:
        with errors.cli_wording(), stop_signals():
            return args.func(args)
    except StreamganError as e:
        if debug:
            _print_traceback()
        print(f"streamgan: error: {redact(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        code = errors.stop_exit_code(e)
        print("streamgan: interrupted" if code == errors.EXIT_INTERRUPTED
              else f"streamgan: stopped by {e}", file=sys.stderr)
        return code
    except Exception as e:  # a bug: say so plainly
        if debug:
            _print_traceback()
        print(f"streamgan: internal error: {type(e).__name__}: {redact(e)} (rerun with --debug "
              "for the traceback)", file=sys.stderr)
        return errors.EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
