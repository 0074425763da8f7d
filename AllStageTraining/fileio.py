"""Small file helpers shared by every layer: atomic writes (temporary file, then rename) and file hashes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename (no half files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON, written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_write_csv(path: str | Path, fieldnames, rows) -> Path:
    """``rows`` (dicts) as CSV with the header ``fieldnames``, written atomically."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OutputPathError(OSError):
    """An output file that cannot be written; the message names the path and says why (exit code 2)."""


_REASONS = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "the file system is read-only", errno.ENOSPC: "no space left on the disk",
            errno.EDQUOT: "the disk quota is exceeded"}


def _why_unwritable(path: Path, error: OSError) -> str:
    """Why ``path`` cannot be written, in words, from the failure ``error`` and what lies on the path."""
    if path.is_dir():
        return "it is a folder; give a file name such as seg.nii.gz"
    blocking = next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)
    if blocking is not None:
        return f"{blocking} is a file, not a folder"
    return _REASONS.get(error.errno, error.strerror or type(error).__name__)


def write_image_atomically(image, path: str | Path) -> Path:
    """Write a SimpleITK image (compressed when the name says ``.gz``) through a temporary file in the same
    folder, then rename: a cancelled run leaves no half-written image. Raises OutputPathError naming the
    path and the reason (its folder is a file, permission denied, a read-only file system, no space, a file
    name SimpleITK has no format for)."""
    import SimpleITK as sitk

    path = Path(path)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)]
    tmp = path.with_name(f".{stem}.tmp{os.getpid()}{suffix}")
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("wb").close()  # the folder takes a file: OSError with its errno otherwise
        sitk.WriteImage(image, str(tmp), True)
        os.replace(tmp, path)
    except OSError as error:
        _remove_quietly(tmp)
        raise OutputPathError(f"cannot write {path}: {_why_unwritable(path, error)}") from None
    except RuntimeError as error:  # SimpleITK's writer
        _remove_quietly(tmp)
        if "Unable to determine ImageIO" in str(error):
            raise OutputPathError(f"cannot write {path}: no image format for a file named like that; use a name "
                                  f"ending in .nii.gz, .nii or .nrrd") from None
        reason = " ".join(str(error).split("sitk::ERROR:")[-1].split())
        raise OutputPathError(f"cannot write {path}: {reason}") from None
    return path


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
