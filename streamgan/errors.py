"""User-facing errors.

Every failure a user can cause (a bad path, a bad model, a bad option) is raised as a
``StreamganError`` subclass carrying one clear line of text and the process exit code the CLI
returns for it. Anything else reaching the CLI is a bug and exits with ``EXIT_INTERNAL``.
"""

from __future__ import annotations

# Documented exit codes (README "Exit codes").
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_OUTPUT = 4
EXIT_MODEL = 5
EXIT_BACKEND = 6
EXIT_INTERRUPTED = 130


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


class Interrupted(StreamganError):
    """The user pressed Ctrl-C; the output written so far was finalised."""

    exit_code = EXIT_INTERRUPTED
