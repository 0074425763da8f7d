"""Where the work of a command runs: the device, the CPU thread count, and a record of both.

Every command calls :func:`set_threads` once, before any heavy work, and :func:`resolve_device` once for its
``--device`` option; the resolved ``torch.device`` is then handed to training and evaluation alike. What a
stage actually ran on is written into its run folder with :func:`describe` (``RUN/runtime.json``, see
``layout.RunFolder``).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path
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


#: PyTorch's CPU allocator reads this when it starts: "1" aligns tensors of 2 MB and more to 2 MB and asks Linux
#: for transparent huge pages (``madvise``), one page fault per 2 MB instead of per 4 kB. Our commands leave it to
#: the environment (PyTorch's default: off). On a two-core AMD Zen 4 machine it had sped up the segmenter's pass
#: over a 1 mm case (3.9 s, 3.0 s of it system time, against 3.0 s and 1.8 s), so the commands had turned it on;
#: on a two-core Intel Xeon (AMX) virtual machine it slowed the one prediction of a fresh process, which is what
#: ``predict`` and the Slicer module run: the full set 3.3-4.2 s against 2.3-2.6 s without, FLAIR + T1ce with
#: synthesized sequences 5.2-5.6 s against 3.7-4.1 s (3 runs each, same peak memory), and training steps
#: changed by less than their noise. ``benchmark`` times a run with it, so each machine shows which way it goes.
HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"


#: What ``--precision`` accepts: ``auto`` picks bfloat16 where the device computes it natively, else float32 (at
#: inference only for sets with T1ce: ``inference.predictor.BFLOAT16_NEEDS``).
PRECISION_CHOICES: tuple[str, ...] = ("auto", "float32", "bfloat16")
#: CPU flags (Linux ``/proc/cpuinfo``) that mean native bfloat16 arithmetic: AVX512-BF16, AMX-BF16.
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 in ``/proc/cpuinfo``).

    Without those instructions oneDNN emulates bfloat16, slower than float32, so ``auto`` stays float32 there
    (and on systems without ``/proc/cpuinfo``).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (``cpuinfo``'s "model name", e.g. "AMD EPYC"), else ``platform.processor()`` or the
    machine type: bfloat16 kernels, and with them a training run's trajectory, differ between CPU models."""
    try:
        with open(cpuinfo, encoding="ascii", errors="ignore") as handle:
            line = next((line for line in handle if line.startswith("model name")), "")
    except OSError:
        line = ""
    return line.partition(":")[2].strip() or platform.processor() or platform.machine()


def resolve_precision(name: str, device: "torch.device") -> str:
    """``auto`` -> "bfloat16" on a CPU with native bfloat16 or a CUDA GPU that supports it, else "float32";
    "float32" and "bfloat16" are returned as they are. ValueError for another name."""
    if name not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {name!r}")
    if name != "auto":
        return name
    if device.type == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bfloat16() else "float32"


def autocast(device: "torch.device", precision: str):
    """The autocast context for a resolved ``precision`` ("bfloat16": autocast; "float32": autocast disabled)."""
    import torch

    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """The package code that runs: ``{"package": version, "commit": git HEAD or None, "modified": bool or None}``.

    ``commit`` is the 12-digit commit of the git work tree the package was imported from (None outside one, e.g.
    in Slicer's Python); ``modified`` says whether the package's tracked files differ from it (None: unknown;
    new files git does not track are not looked at). Read once per process, at its first stage, as the code the
    process imported then: a module imported later, after an edit or a commit, is not told apart."""
    from . import __version__

    package = Path(__file__).resolve().parent
    record: dict[str, Any] = {"package": __version__, "commit": None, "modified": None}
    git = ["git", "-C", str(package.parent)]
    try:
        top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != package.parent:
            return record
        head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10)
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", package.name],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return record
    if head.returncode == 0:
        record["commit"] = head.stdout.strip()
        record["modified"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return record


def code_text(runtime: dict[str, dict]) -> str | None:
    """The code of a run folder's stages (``runtime.json``: ``{stage: describe(...)}``) in one line: the commit
    (``+modified`` when the package differed from it; the package version outside git), stages joined with " / "
    when they differ; None when no stage recorded its code."""
    texts = []
    for record in runtime.values():
        code = record.get("code")
        if code:
            text = code["commit"] or f"package {code['package']}"
            texts.append(text + ("+modified" if code.get("modified") else ""))
    return " / ".join(dict.fromkeys(texts)) or None


def describe(device: "torch.device", precision: str, **extra: Any) -> dict[str, Any]:
    """What a stage ran on: ``{"device", "device_name", "threads", "precision", "torch", "code", "recorded", ...}``.

    precision: how the networks computed (e.g. "float32", "float16 autocast", "bfloat16 autocast").
    code: :func:`code_version`.
    """
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "device_name": name, "threads": torch.get_num_threads(), "precision": precision,
            "torch": torch.__version__, "code": code_version(), "recorded": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
