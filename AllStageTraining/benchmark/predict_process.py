"""Where the time of a whole ``predict`` process goes, so that the overhead around the networks is visible.

The real command (``python -X importtime -m AllStageTraining predict ...``) runs as a user would start it;
this process stamps each line of its output on arrival (``predict`` flushes every line) and splits the wall
time into phases:

- ``start``: from launching the interpreter to ``PROGRESS ... loading model`` (Python, the CLI, torch);
- ``model``: to the first progress line of the prediction (the inference modules' imports, the bundle read,
  the networks built);
- ``read``, ``checks`` (the input checks, co-registration and brain extraction of ``data.prepare_inputs``),
  ``preprocess``, ``networks`` (MAE completion and segmenter), ``map_back``: from predict's own ``timings``
  line; ``predict_other``: the rest of the prediction (progress and log lines);
- ``writing``: from ``PROGRESS ... writing outputs`` to the last ``LOG wrote``;
- ``exit``: from the last output line to the process's end (interpreter teardown).

``overhead_s`` = total - networks. ``imports``: the seconds ``-X importtime`` reports, summed over every import
of the process (self times, so nothing counts twice) and per top-level package (the largest first); they fall
inside ``start`` and ``model`` mostly. ``-X importtime`` itself costs little (two clock reads per module).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

#: predict's ``timings`` keys counted as input checks (the rest are named phases of their own).
CHECK_KEYS = ("checks", "registration", "skull_strip")


def predict_command(bundle: str, images: dict[str, str | None], out: Path, device: str, threads: int) -> list[str]:
    command = [sys.executable, "-X", "importtime", "-m", "AllStageTraining", "predict", "--bundle", str(bundle),
               "--device", device, "--threads", str(threads), "--out-seg", str(out / "seg.nii.gz"),
               "--out-recon-dir", str(out / "recon")]
    for modality, path in images.items():
        if path:
            command += [f"--{modality}", str(path)]
    return command


def run_stamped(command: list[str], stderr_path: Path, timeout: float) -> tuple[list[tuple[float, str]], float, int]:
    """Run ``command``; ([(seconds since launch, stdout line)], total seconds, exit code). Killed at ``timeout``."""
    events = []
    with open(stderr_path, "w") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                events.append((time.perf_counter() - start, line.rstrip("\n")))
            code = process.wait()
        finally:
            timer.cancel()
    return events, time.perf_counter() - start, code


def parse_timings(line: str) -> dict[str, float]:
    """predict's ``LOG timings (s): read 0.14, checks 0.11, map back 0.38`` -> {"read": 0.14, ...}."""
    out = {}
    for item in line.split(":", 1)[1].split(","):
        name, _, value = item.strip().rpartition(" ")
        out[name] = float(value)
    return out


def import_seconds(stderr_text: str, top: int = 6) -> dict:
    """{"total_s", "by_package": {package: seconds}} from ``-X importtime`` output (self times; ``top`` largest)."""
    by_package: dict[str, float] = {}
    for line in stderr_text.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, _, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if not self_us.isdigit():  # the header line
            continue
        root = name.split(".")[0]
        by_package[root] = by_package.get(root, 0.0) + int(self_us) / 1e6
    largest = dict(sorted(by_package.items(), key=lambda item: -item[1])[:top])
    return {"total_s": round(sum(by_package.values()), 3), "by_package": {k: round(v, 3) for k, v in largest.items()}}


def _first(events, predicate, after: float = -1.0) -> float | None:
    return next((t for t, line in events if t > after and predicate(line)), None)


def split_phases(events: list[tuple[float, str]], total: float) -> dict:
    """The phases of the module docstring, in seconds, from the stamped output of one successful run."""
    loading = _first(events, lambda line: line.startswith("PROGRESS") and line.endswith("loading model"))
    predicting = _first(events, lambda line: line.startswith("PROGRESS") and not line.endswith("loading model"))
    writing = _first(events, lambda line: line.startswith("PROGRESS") and line.endswith("writing outputs"))
    if None in (loading, predicting, writing):
        raise ValueError("predict's output lacks the progress lines the phases are read from")
    timings = parse_timings(next(line for _, line in events if line.startswith("LOG timings (s):")))
    written = max([t for t, line in events if line.startswith("LOG wrote ")], default=writing)
    phases = {"start": loading, "model": predicting - loading, "read": timings.get("read", 0.0),
              "checks": sum(timings.get(k, 0.0) for k in CHECK_KEYS), "preprocess": timings.get("preprocess", 0.0),
              "networks": timings.get("reconstruct", 0.0) + timings.get("segment", 0.0),
              "map_back": timings.get("map back", 0.0)}
    phases["predict_other"] = (writing - predicting) - sum(timings.values())
    phases["writing"] = written - writing
    phases["exit"] = total - written
    out = {f"{name}_s": round(value, 3) for name, value in phases.items()}
    out.update(total_s=round(total, 3), overhead_s=round(total - phases["networks"], 3), timings=timings)
    return out


def time_predict_process(bundle, images: dict[str, str | None], out: Path, *, device: str = "cpu", threads: int = 2,
                         timeout: float = 1800) -> dict:
    """Run ``predict`` once as a user would and split its time (see the module docstring); {"error": ...} when
    it fails."""
    out.mkdir(parents=True, exist_ok=True)
    stderr_path = out / "predict_stderr.txt"
    events, total, code = run_stamped(predict_command(bundle, images, out, device, threads), stderr_path, timeout)
    stderr_text = stderr_path.read_text()
    if code != 0:
        reason = [line for line in stderr_text.splitlines() if not line.startswith("import time:")]
        return {"error": f"exit {code}: {(reason or ['no output'])[-1]}"}
    return {**split_phases(events, total), "imports": import_seconds(stderr_text)}
