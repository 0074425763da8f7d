"""The one error convention of every command: a failure is one ``ERROR:`` line on stderr and an exit code.

| code | meaning |
|---:|---|
| 0 | success |
| 1 | anything unexpected (the line says so and asks for a report) |
| 2 | bad input or usage: options, configuration, data, images, checkpoints, text encoder, unwritable outputs |
| 3 | a model bundle (or run folder) that cannot be used |
| 4 | out of memory |
| 5 | the device asked for is not available here (``--device cuda`` without a GPU) |

A command's ``run(args)`` is ``return run_command(lambda: body(args))``: the body returns 0 (or an exit code)
and raises for failures; ``run_command`` turns the exception into the line and the code.
"""

from __future__ import annotations

import sys
from typing import Callable

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_BAD_INPUT = 2
EXIT_BUNDLE = 3
EXIT_OUT_OF_MEMORY = 4
EXIT_DEVICE = 5


class UsageError(ValueError):
    """A bad option value or combination; exit code 2."""


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA or host out-of-memory errors, including ``RuntimeError`` messages that say so."""
    if isinstance(error, MemoryError):
        return True
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a user causes and can fix: options, configuration, data, images, checkpoints, text encoder,
    output paths that cannot be written."""
    from .fileio import OutputPathError
    from .nets.text_encoder import TextEncoderError
    from .training.checkpoint import CheckpointError

    return (ValueError, FileNotFoundError, OutputPathError, TextEncoderError, CheckpointError)  # InputError: ValueError


def exit_code_for(error: BaseException) -> int:
    """The exit code for an exception (see the module docstring)."""
    from .inference.errors import BundleError
    from .runtime import DeviceError

    if isinstance(error, DeviceError):
        return EXIT_DEVICE
    if isinstance(error, BundleError):
        return EXIT_BUNDLE
    if is_out_of_memory(error):
        return EXIT_OUT_OF_MEMORY
    if isinstance(error, _bad_input_errors()):
        return EXIT_BAD_INPUT
    return EXIT_OTHER


def one_line(error: BaseException) -> str:
    """The error's message on one line (newlines folded), with its type when the message is empty."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def error_message(error: BaseException, code: int) -> str:
    """What the ``ERROR:`` line says for ``error`` (whose exit code is ``code``)."""
    if code == EXIT_OUT_OF_MEMORY:
        return (f"out of memory ({one_line(error)[:200]}); close other programs, use --device cpu, or make the work "
                "smaller (a sliding window in the config, a smaller crop or batch)")
    if code == EXIT_OTHER:
        return f"{type(error).__name__}: {one_line(error)} (unexpected; please report it with the command line)"
    return one_line(error)


def report_error(error: BaseException, prefix: str = "") -> int:
    """Print the ``ERROR:`` line for ``error`` on stderr (``prefix`` before the message); return its exit code."""
    code = exit_code_for(error)
    print(f"ERROR: {prefix}{error_message(error, code)}", file=sys.stderr, flush=True)
    return code


def run_command(body: Callable[[], int | None]) -> int:
    """Run a command's body: its exit code (0 when it returns None), or the code of the exception it raised,
    after one ``ERROR:`` line on stderr."""
    try:
        return int(body() or EXIT_OK)
    except Exception as error:  # noqa: BLE001 - every failure becomes one line and a documented code
        return report_error(error)
