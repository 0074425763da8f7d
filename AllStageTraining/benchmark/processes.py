"""Measuring in fresh processes: each measurement runs as ``python -m AllStageTraining.benchmark KIND SPEC`` and
prints one ``RESULT <json>`` line, so its peak memory and thread count are its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (``VmHWM`` from /proc; ``ru_maxrss`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sync(device: str) -> None:
    """Wait for the GPU's queued work (nothing on the CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def run_child(kind: str, spec: dict, timeout: float, huge_pages: bool | None = None) -> dict:
    """Run the child ``kind`` (see ``benchmark.__main__``) on ``spec`` in a fresh Python process; its result
    with ``process_s`` (the whole process's seconds) added, or ``{"error": ...}``. ``huge_pages``: None runs
    the child in this process's environment, as our commands would run; True and False set PyTorch's request
    for transparent huge pages (``runtime.HUGE_PAGES_ENV``) on or off."""
    from ..runtime import HUGE_PAGES_ENV

    command = [sys.executable, "-m", "AllStageTraining.benchmark", kind, json.dumps(spec, default=str)]
    env = dict(os.environ) if huge_pages is None else {**os.environ, HUGE_PAGES_ENV: "1" if huge_pages else "0"}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_s"] = time.perf_counter() - started
    return result
