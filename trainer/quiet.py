"""What the trainer's commands print besides their own lines.

NNCF's, OpenVINO's, ONNX's and PyTorch's log lines, progress bars and warnings stay off the terminal unless
``--debug`` (every ``streamgan-train`` command takes it). The commands' own lines go to stderr, their JSON
result to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings

_debug = False


def add_debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true",
                   help="also show third-party output (NNCF, OpenVINO, ONNX and PyTorch log lines and warnings)")


def configure(debug: bool) -> None:
    """For the whole process: Python warnings and third-party log lines below ERROR are dropped unless
    ``debug``. The project's own messages are log lines, never warnings: every warning comes from a library
    (PyTorch's are often attributed to the line of ours that called it, so they are not told apart by module)."""
    global _debug
    _debug = debug
    if debug:
        return
    warnings.simplefilter("ignore")
    for name in ("torch", "onnxscript", "onnx_ir"):  # never "nncf" here: NNCF sets up its own logger on import
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def nncf_output():
    """Around a call into NNCF: its log lines and progress bars go to stderr with ``--debug``, nowhere
    otherwise (NNCF writes them to stdout, which carries the commands' JSON); its errors always to stderr."""
    import nncf

    for h in logging.getLogger("nncf").handlers:
        if isinstance(h, logging.StreamHandler) and h.stream is sys.stdout:
            h.setStream(sys.stderr)
    nncf.set_log_level(logging.INFO if _debug else logging.ERROR)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(sys.stderr if _debug else null):
        yield
