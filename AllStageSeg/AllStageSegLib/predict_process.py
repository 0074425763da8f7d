"""Run ``predict`` in the background: progress, log, cancel, errors.

The child runs ``<python> run_predict.py predict ...`` (the launcher script beside this file), which finds the
extension's copy of AllStageTraining by its own path, so the child does not depend on PYTHONPATH. The child gets its own process group (POSIX session / Windows process group) so that cancelling ends the
whole tree. Two reader threads move its stdout and stderr lines into a queue; :meth:`PredictProcess.poll`
(called from a QTimer in Slicer, or in a loop) drains it without ever blocking. The ``predict`` contract:
stdout lines ``PROGRESS <fraction 0..1> <stage words>``, ``LOG <text>`` and finally ``DONE <seconds>``; exit codes 0 ok,
2 bad input, 3 bundle error, 4 out of memory, 1 anything else, with one ``ERROR: ...`` line on stderr.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

#: What each exit code of ``predict`` means, for when it dies without an ERROR line.
EXIT_MEANINGS = {
    1: "the segmentation process failed",
    2: "the input images cannot be used",
    3: "the model bundle cannot be used",
    4: "the computer ran out of memory; try the CPU, or close other programs",
    5: "the device asked for is not available; choose another device (e.g. the CPU)",
}

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"


#: The script that runs ``python -m AllStageTraining`` from the extension's copy of the package.
LAUNCHER = Path(__file__).resolve().with_name("run_predict.py")


@dataclass
class PredictOptions:
    """Arguments of one ``predict`` call (files in, files out). New ``predict`` options (preprocessing,
    precision) become fields here and flags in :func:`predict_command`."""

    inputs: dict[str, Path]  # sequence name -> NIfTI file, present sequences only
    bundle: Path
    out_seg: Path
    out_recon_dir: Path | None = None  # None: do not write synthesized sequences
    device: str = "auto"  # auto | cpu | cuda
    postprocess_et: bool = False
    reference: str | None = None  # sequence whose geometry the outputs take (default: first present)
    skull_strip: str = "auto"  # brain extraction: auto (when a sequence is not skull-stripped) | always | never
    register: str = "auto"  # co-registration onto the reference: auto (when misaligned) | always | never
    out_brain_mask: Path | None = None  # None: do not write the brain mask the model was given


def predict_command(options: PredictOptions, python_executable: str | Path = sys.executable,
                    launcher: str | Path = LAUNCHER) -> list[str]:
    """The argument vector that runs ``predict`` with ``options`` through the ``launcher`` script."""
    command = [str(python_executable), str(launcher), "predict"]
    for modality, path in options.inputs.items():
        command += [f"--{modality}", str(path)]
    command += ["--bundle", str(options.bundle), "--out-seg", str(options.out_seg), "--device", options.device]
    if options.out_recon_dir is not None:
        command += ["--out-recon-dir", str(options.out_recon_dir)]
    if options.postprocess_et:
        command.append("--postprocess-et")
    if options.reference:
        command += ["--reference", options.reference]
    command += ["--skull-strip", options.skull_strip, "--register", options.register]
    if options.out_brain_mask is not None:
        command += ["--out-brain-mask", str(options.out_brain_mask)]
    return command


@dataclass
class ProgressUpdate:
    """What :meth:`PredictProcess.poll` saw since the previous call."""

    state: str  # running | succeeded | failed | cancelled
    fraction: float  # 0..1, the latest PROGRESS value
    stage: str  # the latest PROGRESS words
    new_log: list[str] = field(default_factory=list)  # lines (stdout and stderr) that arrived since last poll
    message: str = ""  # the error for `failed`, the seconds line for `succeeded`


def parse_line(line: str) -> tuple[str, float | None, str]:
    """Classify one stdout line: ("progress", fraction, stage), ("done", seconds, ""), or ("log", None, text).

    ``LOG <text>`` lines give their text; any other line is passed on as it is.
    """
    parts = line.strip().split(maxsplit=2)
    try:
        if len(parts) >= 2 and parts[0] == "PROGRESS":
            return "progress", min(max(float(parts[1]), 0.0), 1.0), parts[2] if len(parts) > 2 else ""
        if len(parts) == 2 and parts[0] == "DONE":
            return "done", float(parts[1]), ""
    except ValueError:
        pass
    text = line.rstrip("\n")
    return "log", None, text[4:] if text.startswith("LOG ") else text


def child_environment(base: dict | None = None) -> dict[str, str]:
    """The child's environment: ``base`` (default: this process') with unbuffered UTF-8 output."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


class PredictProcess:
    """One background ``predict`` run (or any command that speaks its progress protocol)."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None):
        self.command = command
        self.env = env
        self.process: subprocess.Popen | None = None
        self.fraction = 0.0
        self.stage = "starting"
        self.log: list[str] = []
        self.error_line = ""
        self.seconds: float | None = None
        self._lines: queue.Queue = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._cancelled = False
        self._state = RUNNING

    def start(self) -> "PredictProcess":
        kwargs = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=self.env, text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            reader = threading.Thread(target=self._read, args=(stream, name), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def _read(self, stream, name: str) -> None:
        for line in stream:
            self._lines.put((name, line.rstrip("\r\n")))
        stream.close()

    @property
    def state(self) -> str:
        return self._state

    def poll(self) -> ProgressUpdate:
        """Take in what the process wrote so far; never blocks. Call until ``state`` is not running."""
        new_log = self._drain()
        if self._state == RUNNING and self.process.poll() is not None:
            for reader in self._readers:  # the pipes close right after exit; collect their last lines
                reader.join(timeout=5)
            new_log += self._drain()
            self._finish(self.process.returncode)
        message = self.error_message() if self._state == FAILED else ""
        if self._state == SUCCEEDED and self.seconds is not None:
            message = f"finished in {self.seconds:.1f} s"
        return ProgressUpdate(self._state, self.fraction, self.stage, new_log, message)

    def _drain(self) -> list[str]:
        lines = []
        while True:
            try:
                name, line = self._lines.get_nowait()
            except queue.Empty:
                self.log += lines
                return lines
            if name == "stderr":
                if line.startswith("ERROR:"):
                    self.error_line = line[len("ERROR:"):].strip()
                lines.append(line)
                continue
            kind, value, stage = parse_line(line)
            if kind == "progress":
                self.fraction, self.stage = value, stage
            elif kind == "done":
                self.seconds, self.fraction = value, 1.0
            else:
                line = stage
            lines.append(line)

    def _finish(self, returncode: int) -> None:
        if self._cancelled:
            self._state = CANCELLED
        elif returncode == 0:
            self._state = SUCCEEDED
        else:
            self._state = FAILED

    def error_message(self) -> str:
        """The child's ERROR line, or what its exit code means when it wrote none."""
        if self.error_line:
            return self.error_line
        code = self.process.returncode if self.process else None
        meaning = EXIT_MEANINGS.get(code, "the segmentation process ended unexpectedly")
        tail = next((line for line in reversed(self.log) if line.strip() and parse_line(line)[0] == "log"), "")
        return f"{meaning} (exit code {code})" + (f": {tail}" if tail else "")

    def wait(self, timeout: float | None = None, interval: float = 0.05, on_update=None) -> ProgressUpdate:
        """Poll until the process ends (or ``timeout`` seconds pass, then cancel and raise TimeoutError)."""
        return wait_until_finished(self, "predict", timeout, interval, on_update)

    def cancel(self, grace: float = 3.0) -> None:
        """End the process and all its children: a polite signal first, then a kill after ``grace`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self._cancelled = True
        end_process_tree(self.process, grace)


def wait_until_finished(run, what: str, timeout: float | None, interval: float, on_update) -> ProgressUpdate:
    """Call ``run.poll()`` every ``interval`` s until its state is not RUNNING; past ``timeout`` s cancel
    (and poll once more, so the run can clean up) and raise TimeoutError. ``on_update`` sees each update."""
    start = time.monotonic()
    while True:
        update = run.poll()
        if on_update is not None:
            on_update(update)
        if update.state != RUNNING:
            return update
        if timeout is not None and time.monotonic() - start > timeout:
            run.cancel()
            run.poll()
            raise TimeoutError(f"{what} did not finish within {timeout} s")
        time.sleep(interval)


def end_process_tree(process: subprocess.Popen, grace: float = 3.0) -> None:
    """Terminate ``process`` and everything it started (its process group / session)."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/PID", str(process.pid), "/T", "/F"], capture_output=True, check=False)
        process.wait(timeout=grace + 10)
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)
