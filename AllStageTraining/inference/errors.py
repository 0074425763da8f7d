"""Errors a user can cause at inference time, each with a one-line message that says what to do.

``InputError`` covers the images (none given, unreadable, empty, NaN, incompatible geometry);
``BundleError`` and its subclasses cover model bundles. The ``predict`` CLI maps them to exit codes
(see ``EXIT_CODES`` and ``exit_code_for``).
"""

from __future__ import annotations

#: Exit codes of the ``predict`` CLI (documented in docs/ARCHITECTURE.md, "inference").
EXIT_OK = 0
EXIT_OTHER = 1
EXIT_BAD_INPUT = 2
EXIT_BUNDLE = 3
EXIT_OUT_OF_MEMORY = 4


class InputError(ValueError):
    """The input images cannot be used: none given, unreadable, empty or NaN, or incompatible geometry."""


class BundleError(Exception):
    """A model bundle cannot be used. The message names the bundle and what is wrong."""


class BundleNotFoundError(BundleError):
    """The bundle path does not exist or lacks a required file."""


class BundleFormatError(BundleError):
    """The bundle's files are not what the format says (bad JSON, bad safetensors header, missing keys)."""


class BundleVersionError(BundleError):
    """The bundle's ``format_version`` is not one this package reads."""


class BundleChecksumError(BundleError):
    """A file's sha256 differs from the one recorded in ``bundle.json`` (tampered or corrupted)."""


class BundlePickleError(BundleError):
    """The bundle contains pickled content, which is never loaded (it can run arbitrary code)."""


class BundleMismatchError(BundleError):
    """The tensors do not match the networks built from the bundle's configuration (names or shapes)."""


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA or host out-of-memory errors, including ``RuntimeError`` messages that say so."""
    if isinstance(error, MemoryError):
        return True
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def exit_code_for(error: BaseException) -> int:
    """The ``predict`` exit code for an exception (2 bad input, 3 bundle, 4 out of memory, 1 other)."""
    if isinstance(error, InputError):
        return EXIT_BAD_INPUT
    if isinstance(error, BundleError):
        return EXIT_BUNDLE
    if is_out_of_memory(error):
        return EXIT_OUT_OF_MEMORY
    return EXIT_OTHER


def one_line(error: BaseException) -> str:
    """The error's message on one line (newlines folded), with its type when the message is empty."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
