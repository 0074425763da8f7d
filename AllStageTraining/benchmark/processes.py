"""Measuring in fresh processes: each measurement runs as ``python -m AllStageTraining.benchmark KIND SPEC`` and
prints one ``RESULT <json>`` line, so its peak memory and thread count are its own."""

from __future__ import annotations

import json
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


def run_child(kind: str, spec: dict, timeout: float) -> dict:
    """Run the child ``kind`` (see ``benchmark.__main__``) on ``spec`` in a fresh Python process; its result
    with ``process_s`` (the whole process's seconds) added, or ``{"error": ...}``."""
    command = [sys.executable, "-m", "AllStageTraining.benchmark", kind, json.dumps(spec, default=str)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_s"] = time.perf_counter() - started
    return result
