"""``demo``: synthesize data, train, evaluate, export and report: the whole pipeline on the CPU.

Stages, each finished stage marked by ``OUT/stages/<name>.json`` (a rerun skips it and says so; an interrupted
training stage resumes from its checkpoint, an interrupted evaluation from the predictions already written):

1. ``synth``          synthetic cases on the MNI152 anatomy at 2 mm (``OUT/data``)
2. ``prepare``        split with training missing ratio 0.5 (``OUT/split.json``)
3. ``ours-mae``       stage 1, the multimodal MAE (``OUT/runs/ours/mae``)
4. ``ours-seg``       stage 2, the personalized segmenter (``OUT/runs/ours/seg``)
5. ``zero-fill-seg``  the zero-fill baseline on the same data, crops, width, steps and seed
6. ``ours-eval``, ``zero-fill-eval``  all 15 scenarios on the test cases (``OUT/runs/<method>/eval``)
7. ``export``         the model bundle of ``ours`` (``OUT/demo_bundle.zip``)
8. ``report``         ``OUT/report/report.md`` and ``report.html`` with figures

Offline there are no pretrained CLIP weights, so the demo embeds the scenario prompts with an *untrained*
open_clip text encoder (``--text-pretrained`` takes a local checkpoint or tag instead); the log, the report
and the bundle say so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

HELP = "synthesize data, train, evaluate, export and report: the whole pipeline on the CPU"

MISSING_RATIO = 0.5
METHODS: tuple[str, ...] = ("ours", "zero-fill")
STAGES: tuple[str, ...] = ("synth", "prepare", "ours-mae", "ours-seg", "zero-fill-seg", "ours-eval",
                           "zero-fill-eval", "export", "report")


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
#: 2-core development machine: full about 8 minutes, quick about 2 minutes (README, "The demo and its report").
SIZES: dict[str, DemoSize] = {
    "full": DemoSize(n_cases=20, n_val=1, n_test=4, crop=48, steps_mae=350, steps_seg=350),
    "quick": DemoSize(n_cases=6, n_val=0, n_test=1, crop=32, steps_mae=60, steps_seg=60),
}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (default: %(default)s); rerun "
                        "with the same folder to continue an interrupted demo")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller demo (fewer cases, steps and smaller crops): about 3 minutes on 2 cores")
    parser.add_argument("--text-pretrained", metavar="TAG_OR_PATH",
                        help="open_clip pretrained tag or local checkpoint for the prompt encoder; without it "
                             "the demo uses an untrained text encoder (offline) and says so")
    parser.add_argument("--text-model", default="ViT-B-32", help="open_clip model name (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--stop-after", choices=STAGES, metavar="STAGE",
                        help=f"stop after this stage (one of {', '.join(STAGES)}); a rerun continues")


# ------------------------------------------------------------------------------------------------ plumbing
class StageLog:
    """Stage lines on stdout and in ``OUT/demo.log``; markers in ``OUT/stages``."""

    def __init__(self, out):
        from pathlib import Path

        self.out = Path(out)
        (self.out / "stages").mkdir(parents=True, exist_ok=True)
        self.file = (self.out / "demo.log").open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        import time

        print(text, flush=True)
        self.file.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")
        self.file.flush()

    def marker(self, name: str):
        return self.out / "stages" / f"{name}.json"

    def run(self, name: str, description: str, fn):
        """Run ``fn()`` as stage ``name`` unless its marker exists; return the marker's content."""
        import json
        import os
        import time

        index = STAGES.index(name) + 1
        prefix = f"[{index}/{len(STAGES)}] {name}"
        marker = self.marker(name)
        if marker.exists():
            done = json.loads(marker.read_text())
            self.line(f"{prefix}: skipped (finished {done['finished']}, took {done['seconds']:.0f} s)")
            return done
        self.line(f"{prefix}: {description} ...")
        start = time.perf_counter()
        result = fn()
        done = {"stage": name, "seconds": round(time.perf_counter() - start, 1),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "result": result}
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(json.dumps(done, indent=2) + "\n")
        os.replace(tmp, marker)
        self.line(f"{prefix}: done in {done['seconds']:.0f} s")
        return done

    def close(self) -> None:
        self.file.close()


def demo_config(size: DemoSize, text_model: str, text_pretrained: str | None):
    """The ``cpu`` preset with the demo's crop, steps and text encoder."""
    from AllStageTraining.config import TextConfig, preset

    cfg = preset("cpu")
    cfg.seed = size.seed
    cfg.data.crop_size = (size.crop,) * 3
    for optim, steps in ((cfg.optim_mae, size.steps_mae), (cfg.optim_seg, size.steps_seg)):
        optim.steps = steps
        optim.ckpt_every = max(10, steps // 6)
        optim.log_every = max(1, steps // 30)
        optim.val_every = 0
    cfg.seg.text = TextConfig(model_name=text_model, pretrained=text_pretrained,
                              allow_untrained=text_pretrained is None)
    return cfg


def _synthesize_missing(data_dir, n: int, seed: int) -> list[str]:
    """Synthesize the cases 1..n that are not complete yet; each case is written to a temporary folder and
    renamed, so an interrupted run never leaves a half-written case behind."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from tqdm.auto import tqdm

    from AllStageTraining.constants import MODALITIES
    from AllStageTraining.synth.generator import case_id, synthesize

    data_dir = Path(data_dir)
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


def _check_settings(out, settings: dict) -> None:
    """Record the demo's settings and this invocation in ``OUT/demo.json``; refuse to continue a folder made
    with other settings."""
    import json
    import shlex
    import sys
    import time

    path = out / "demo.json"
    saved = json.loads(path.read_text()) if path.exists() else {"settings": settings}
    if saved["settings"] != settings:
        changed = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
        raise SystemExit(f"demo: {out} holds a demo made with other settings ({', '.join(changed)}); "
                         f"rerun with the same options to continue it, or use another --out")
    saved.setdefault("invocations", []).append({"time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                "command": "python -m AllStageTraining " + shlex.join(sys.argv[1:])})
    path.write_text(json.dumps(saved, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ run
def run(args) -> int:
    import json
    import time
    from pathlib import Path

    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    log = StageLog(out)
    untrained = args.text_pretrained is None
    settings = {"mode": mode, **dataclasses.asdict(size), "missing_ratio": MISSING_RATIO,
                "text_model": args.text_model, "text_pretrained": args.text_pretrained}
    _check_settings(out, settings)
    start = time.perf_counter()
    log.line(f"AllStageSeg demo ({mode}) in {out}: {size.n_cases} synthetic cases, training missing ratio "
             f"{MISSING_RATIO}, {size.steps_mae} MAE + {size.steps_seg} segmenter steps on {size.crop}^3 crops")
    if untrained:
        log.line("WARNING: no pretrained CLIP weights offline: the scenario prompts are embedded by an UNTRAINED "
                 "open_clip text encoder (fixed random codes, not CLIP semantics). Give --text-pretrained for "
                 "real CLIP weights. The report and the bundle record this.")

    cfg = demo_config(size, args.text_model, args.text_pretrained)
    data_dir, split_path, runs = out / "data", out / "split.json", out / "runs"
    bundle_path = out / "demo_bundle.zip"
    from AllStageTraining.commands import experiment

    def stop_here(name: str) -> bool:
        if args.stop_after == name:
            log.line(f"stopped after stage {name!r} as asked (--stop-after); rerun without it to continue")
            return True
        return False

    def prepare() -> dict:
        from AllStageTraining.data.discovery import find_cases
        from AllStageTraining.data.splits import format_summary, make_split, save_split

        cases = find_cases(data_dir)
        split = make_split(cases, seed=size.seed, val_fraction=size.n_val / len(cases),
                           test_fraction=size.n_test / len(cases), missing_ratio=MISSING_RATIO)
        save_split(split, split_path)
        log.line(format_summary(split))
        return {"train": len(split["train"]), "val": len(split["val"]), "test": split["test"]}

    def method_cfg(method: str):
        method_cfg = experiment.method_config(cfg, method)
        run_dir = runs / method
        run_dir.mkdir(parents=True, exist_ok=True)
        method_cfg.save(run_dir / "config.json")
        return method_cfg, run_dir

    def train_mae() -> dict:
        method_cfg_, run_dir = method_cfg("ours")
        return {"status": experiment.stage_train_mae(method_cfg_, split_path, run_dir, log=log.line)}

    def train_seg(method: str):
        def stage() -> dict:
            method_cfg_, run_dir = method_cfg(method)
            return {"status": experiment.stage_train_seg(method_cfg_, split_path, run_dir, log=log.line)}
        return stage

    def evaluate(method: str):
        def stage() -> dict:
            from AllStageTraining.data.splits import load_split

            _, table = experiment.stage_evaluate(runs / method, load_split(split_path), method=method,
                                                 log=log.line)
            means = table.overall_means("dice")
            log.line(f"  {method}: mean Dice over the 15 scenarios: "
                     + ", ".join(f"{r} {100 * v:.1f}" for r, v in means.items()))
            return {"mean_dice": means}
        return stage

    def export() -> dict:
        from AllStageTraining.inference.bundle import SYNTHETIC_NOTE, export_bundle

        note = (f"{SYNTHETIC_NOTE} Demo model ({mode} demo: {size.n_cases} synthetic 2 mm cases, "
                f"{size.steps_mae}+{size.steps_seg} CPU training steps): it shows the pipeline working, it is not "
                "a useful segmenter of real scans.")
        if untrained:
            note += " Its scenario prompts were embedded by an UNTRAINED text encoder."
        export_bundle(runs / "ours", bundle_path, {"split": str(split_path), "note": note,
                                                   "provenance": {"produced_by": "python -m AllStageTraining demo",
                                                                  "demo_settings": settings}})
        return {"bundle": bundle_path.name, "bytes": bundle_path.stat().st_size}

    def report() -> dict:
        from AllStageTraining.report.demo_report import write_demo_report

        md, html = write_demo_report(out, methods=METHODS, log=log.line)
        return {"markdown": str(md.relative_to(out)), "html": str(html.relative_to(out))}

    plan = [
        ("synth", f"synthesize {size.n_cases} cases (2 mm, MNI152 anatomy)",
         lambda: {"cases": _synthesize_missing(data_dir, size.n_cases, size.seed)}),
        ("prepare", f"split with training missing ratio {MISSING_RATIO}", prepare),
        ("ours-mae", f"train the multimodal MAE (stage 1, {size.steps_mae} steps)", train_mae),
        ("ours-seg", f"train the personalized segmenter (stage 2, {size.steps_seg} steps)", train_seg("ours")),
        ("zero-fill-seg", f"train the zero-fill baseline ({size.steps_seg} steps, same data and crops)",
         train_seg("zero-fill")),
        ("ours-eval", "evaluate ours on all 15 scenarios", evaluate("ours")),
        ("zero-fill-eval", "evaluate zero-fill on all 15 scenarios", evaluate("zero-fill")),
        ("export", f"export the bundle to {bundle_path.name}", export),
        ("report", "write the report", report),
    ]
    try:
        for name, description, fn in plan:
            log.run(name, description, fn)
            if stop_here(name):
                return 0
        log.line(f"demo finished in {time.perf_counter() - start:.0f} s (this invocation)")
        log.line(f"report: {out / 'report' / 'report.html'}")
        log.line(f"bundle: {bundle_path}  (load it in 3D Slicer's AllStageSeg module, or "
                 f"python -m AllStageTraining predict --bundle {bundle_path} ...)")
        summary = {name: json.loads(log.marker(name).read_text()) for name, _, _ in plan}
        (out / "stages" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        log.close()
    return 0
