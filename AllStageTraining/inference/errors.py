"""Errors a user can cause at inference time, each with a one-line message that says what to do.

``InputError`` covers the images (none given, unreadable, empty, NaN, incompatible geometry);
``BundleError`` and its subclasses cover model bundles. Every command maps them to exit codes 2 and 3
(``exit_codes``).
"""

from __future__ import annotations


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
