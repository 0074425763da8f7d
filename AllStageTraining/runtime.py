"""Where the work of a command runs: the device, the CPU thread count, and a record of both.

Every command calls :func:`set_threads` once, before any heavy work, and :func:`resolve_device` once for its
``--device`` option; the resolved ``torch.device`` is then handed to training and evaluation alike. What a
stage actually ran on is written into its run folder with :func:`describe` (``RUN/runtime.json``, see
``layout.RunFolder``).
"""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used, so that importing this module (for --help) stays fast
    import torch

#: What ``--device`` accepts.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """The requested device is not usable on this machine; the message says what to pass instead.

    Commands exit with their own code for it (``exit_codes.EXIT_DEVICE``), distinct from bad input."""


def resolve_device(name: "str | torch.device" = "auto", local_rank: int | None = None) -> "torch.device":
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` -> ``cuda:<local_rank>``.

    ``local_rank`` defaults to ``$LOCAL_RANK`` (set by ``torchrun``; 0 otherwise), so every process of a
    distributed job gets its own GPU. A ``torch.device`` is returned unchanged. Raises :class:`DeviceError`
    when CUDA is asked for but absent, ``ValueError`` for a name that is no device.
    """
    import torch

    if isinstance(name, torch.device):
        return name
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} was asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
        try:
            return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:<index>") from None
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device("cpu")


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a ``torchrun`` job (``$RANK``)."""
    return int(os.environ.get("RANK", "0")) == 0


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch's operators (one inter-op thread); None leaves torch's choice."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, not {threads}")
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (only possible before the first parallel work)
        pass


def describe(device: "torch.device", precision: str, **extra: Any) -> dict[str, Any]:
    """What a stage ran on: ``{"device", "device_name", "threads", "precision", "torch", "recorded", ...}``.

    precision: how the networks computed (e.g. "float32", "float16 autocast", "bfloat16 autocast").
    """
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {"device": str(device), "device_name": name, "threads": torch.get_num_threads(), "precision": precision,
            "torch": torch.__version__, "recorded": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
