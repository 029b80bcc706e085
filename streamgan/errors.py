"""User-facing errors.

Every failure a user can cause (a bad path, a bad model, a bad option) is raised as a
``StreamganError`` subclass carrying one clear line of text and the process exit code the CLI
returns for it. Anything else reaching the CLI is a bug and exits with ``EXIT_INTERNAL``.

Messages name options the way the caller knows them: ``flag("-y", "overwrite=True")`` gives the
command-line spelling when the ``streamgan`` command runs (``cli_wording()``) and the Python
API's otherwise.
"""

from __future__ import annotations

import contextlib
import signal

# Documented exit codes (README "Exit codes").
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_OUTPUT = 4
EXIT_MODEL = 5
EXIT_BACKEND = 6
EXIT_BATCH = 7  # a batch ran to its end but some files failed (named; see the ledger)
EXIT_CLUSTER = 8  # Ray is not installed, or the cluster cannot be reached
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM gives 143, SIGHUP 129 (128 + the signal)
EXIT_TERMINATED = 128 + signal.SIGTERM

_cli_wording = False


@contextlib.contextmanager
def cli_wording():
    """While the command line runs a command, messages name options as it spells them."""
    global _cli_wording
    old, _cli_wording = _cli_wording, True
    try:
        yield
    finally:
        _cli_wording = old


def cli_wording_on() -> bool:
    """Whether messages name options as the command line spells them (batch workers in other
    processes are told, so their messages match the driver's)."""
    return _cli_wording


def flag(cli: str, api: str) -> str:
    """``cli`` under the ``streamgan`` command, ``api`` for library users."""
    return cli if _cli_wording else api


class StreamganError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user."""

    exit_code = EXIT_INTERNAL


class UsageError(StreamganError):
    """An option or argument that cannot work (unknown backend, bad size, ...)."""

    exit_code = EXIT_USAGE


class InputError(StreamganError):
    """The input is missing, not a video, empty, or in a codec FFmpeg cannot decode."""

    exit_code = EXIT_INPUT


class OutputError(StreamganError):
    """The output cannot be written (exists, unwritable folder, full disk, encoder missing)."""

    exit_code = EXIT_OUTPUT


class ModelError(StreamganError):
    """A plugin or model file is missing, corrupt, or does not match its card."""

    exit_code = EXIT_MODEL


class BackendError(StreamganError):
    """An inference backend is not installed or cannot run this model."""

    exit_code = EXIT_BACKEND


class BatchError(StreamganError):
    """Some files of a batch failed; the others were done (the ledger has every outcome)."""

    exit_code = EXIT_BATCH


class ClusterError(StreamganError):
    """``cluster=`` cannot work here: Ray is not installed, or the address cannot be reached."""

    exit_code = EXIT_CLUSTER


class Interrupted(StreamganError):
    """The run was stopped (Ctrl-C, SIGTERM, SIGHUP); the output written so far was finalised.

    ``exit_code`` is 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""

    exit_code = EXIT_INTERRUPTED


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by the command line's SIGTERM/SIGHUP handler, so a stop request
    takes the same path as Ctrl-C (outputs finalised); ``signum`` says which signal it was."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped the run (130 for Ctrl-C)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)
