"""``experiment``: run a grid of methods x training missing ratios (x seeds) and write one comparison.

Every cell is a ``train`` run folder (``RUN/config.json``, ``RUN/mae/``, ``RUN/seg/``, ``RUN/eval/``) trained on
the same split, crops, widths, steps and seed as the other methods of its row; only the method differs.
Layout under ``--out``::

    experiment.json                 the grid and the base configuration
    splits/r<ratio>_s<seed>.json    one split per (missing ratio, seed)
    r<ratio>_s<seed>/<method>/      one run folder per cell
    comparison.csv, comparison.md   mean Dice per region per method per ratio (+ links to every cell's table)
    comparison.png                  grouped bars: mean Dice per region, method and ratio

A cell is finished when its ``eval/summary.json`` exists; a rerun skips finished cells and resumes the others
from their checkpoints. Cells whose MAE would be identical (same data, split, seed and stage-1 settings: for
example ``ours``, ``ours-no-distill`` and ``ours-no-personal``) train it once and copy it.

The methods (METHOD.md, "Methods to compare"): ``ours``, ``zero-fill``, ``m3ae-style`` and the ablations of
``ours`` that switch off one part each: ``ours-no-da`` (no distribution approximation: w_pop = w_cons = 0),
``ours-no-distill`` (no co-distillation: w_logit_distill = w_feat_distill = 0) and ``ours-no-personal`` (no
hyper-network personalization).
"""

from __future__ import annotations

HELP = "run a grid of methods x training missing ratios and write one comparison"

#: Method names the grid accepts, in the order tables list them.
METHODS: tuple[str, ...] = ("ours", "zero-fill", "m3ae-style", "ours-no-da", "ours-no-distill", "ours-no-personal")


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder of BraTS-style cases (all methods use the same)")
    parser.add_argument("--out", required=True, help="experiment folder (rerun with the same folder to resume)")
    parser.add_argument("--methods", default="ours,zero-fill,m3ae-style",
                        help=f"comma-separated, from {', '.join(METHODS)} (default: %(default)s)")
    parser.add_argument("--ratios", default="0,0.5",
                        help="training missing ratios, comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated; one split per ratio and seed")
    parser.add_argument("--preset", default="cpu", choices=("tiny", "cpu", "paper"),
                        help="configuration preset (default: %(default)s)")
    parser.add_argument("--config", help="a RunConfig JSON to start from instead of the preset")
    parser.add_argument("--steps-mae", type=int, help="stage-1 steps (default: the preset's)")
    parser.add_argument("--steps-seg", type=int, help="stage-2 steps (default: the preset's)")
    parser.add_argument("--crop", type=int, help="cubic training crop in voxels, a multiple of 8 (default: the preset's)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of cases for validation")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of cases for testing")
    parser.add_argument("--text-pretrained",
                        help="open_clip pretrained tag or local checkpoint for the prompt encoder "
                             "(default: the preset's; see --allow-untrained-text-encoder)")
    parser.add_argument("--allow-untrained-text-encoder", action="store_true",
                        help="embed the scenario prompts with an untrained open_clip text encoder (offline "
                             "use; recorded in every run and bundle)")
    parser.add_argument("--scenarios", default="all",
                        help="scenarios to evaluate, comma-separated short names such as FC12,F1 (default: all 15)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (evaluation)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


# ------------------------------------------------------------------------------------------------ cells
def method_config(base, method: str):
    """A copy of ``base`` (RunConfig) set up for ``method``; every other field stays the same."""
    from AllStageTraining.config import RunConfig

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    cfg = RunConfig.from_dict(base.to_dict())
    cfg.seg.method = method if method in ("zero-fill", "m3ae-style") else "ours"
    if method in ("m3ae-style", "ours-no-da"):  # L_rec only: absent sequences get no supervision
        cfg.mae.w_pop = 0.0
        cfg.mae.w_cons = 0.0
    if method == "ours-no-distill":
        cfg.seg.w_logit_distill = 0.0
        cfg.seg.w_feat_distill = 0.0
    if method == "ours-no-personal":
        cfg.seg.personalize = "none"
    from AllStageTraining.training.stage2 import method_config as trained_config

    return trained_config(cfg)  # what stage 2 trains with (baselines: no hyper-network)


def mae_identity(cfg, split_path) -> str:
    """A key equal for two runs exactly when their stage-1 training would be identical."""
    import hashlib
    import json
    from pathlib import Path

    parts = {
        "split": hashlib.sha256(Path(split_path).read_bytes()).hexdigest(),
        "seed": cfg.seed,
        "data": cfg.to_dict()["data"],
        "net": cfg.to_dict()["net"],
        "mae": cfg.to_dict()["mae"],
        "optim_mae": cfg.to_dict()["optim_mae"],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def finished(path) -> bool:
    from pathlib import Path

    return Path(path).exists()


def stage_train_mae(cfg, split_path, run_dir, *, mae_from=None, log=print) -> str:
    """Stage 1 into ``run_dir/mae``: skipped when finished, copied from ``mae_from`` (a finished ``mae/``
    folder with the same :func:`mae_identity`) when given, otherwise trained (resuming a checkpoint)."""
    import json
    import shutil
    from pathlib import Path

    mae_dir = Path(run_dir) / "mae"
    if finished(mae_dir / "model.safetensors"):
        return "skipped"
    if mae_from is not None:
        if mae_dir.exists():
            shutil.rmtree(mae_dir)
        shutil.copytree(mae_from, mae_dir, ignore=shutil.ignore_patterns("checkpoint.pt*"))
        (mae_dir / "copied_from.json").write_text(json.dumps({"source": str(mae_from)}) + "\n")
        log(f"  MAE copied from {mae_from} (identical stage-1 settings)")
        return "copied"
    from AllStageTraining.training.stage1 import train_mae

    train_mae(cfg, split_path, mae_dir, resume=True)
    (mae_dir / "identity.json").write_text(json.dumps({"key": mae_identity(cfg, split_path)}) + "\n")
    return "trained"


def stage_train_seg(cfg, split_path, run_dir, *, log=print) -> str:
    """Stage 2 into ``run_dir/seg`` (from ``run_dir/mae`` unless the method has no MAE)."""
    from pathlib import Path

    run_dir = Path(run_dir)
    if finished(run_dir / "seg" / "model.safetensors"):
        return "skipped"
    from AllStageTraining.training.stage2 import train_seg

    mae_dir = None if cfg.seg.method == "zero-fill" else run_dir / "mae"
    train_seg(cfg, split_path, mae_dir, run_dir / "seg", resume=True)
    return "trained"


def stage_evaluate(run_dir, split: dict, *, method: str, device: str = "auto", scenarios=None, log=print):
    """The 15-scenario evaluation of the test split into ``run_dir/eval`` (resumes predictions); ``scenarios``
    restricts it to some of them (default: all)."""
    from pathlib import Path

    from AllStageTraining.evaluation.scenario_eval import evaluate_test_split
    from AllStageTraining.evaluation.tables import ScenarioTable
    from AllStageTraining.inference.predictor import Predictor

    eval_dir = Path(run_dir) / "eval"
    if finished(eval_dir / "summary.json"):
        return "skipped", ScenarioTable.from_csv(eval_dir / "table.csv", method)
    from AllStageTraining.constants import SCENARIOS

    predictor = Predictor.from_run(run_dir, device=device)
    return "done", evaluate_test_split(predictor, split, eval_dir, method=method, scenarios=scenarios or SCENARIOS)


def find_mae_source(root, key: str, exclude) -> object | None:
    """A finished ``mae/`` folder under ``root`` whose identity is ``key`` (not ``exclude``), or None."""
    import json
    from pathlib import Path

    for identity in sorted(Path(root).glob("*/*/mae/identity.json")):
        mae_dir = identity.parent
        if mae_dir.parent == Path(exclude):
            continue
        try:
            if json.loads(identity.read_text()).get("key") == key and finished(mae_dir / "model.safetensors"):
                return mae_dir
        except (OSError, ValueError):
            continue
    return None


def run_cell(cfg, method: str, split_path, run_dir, *, search_root=None, device="auto", scenarios=None, log=print):
    """Train and evaluate one method into ``run_dir``; returns ``(status, ScenarioTable)``."""
    import json
    import time
    from pathlib import Path

    from AllStageTraining.data.splits import load_split

    run_dir = Path(run_dir)
    if finished(run_dir / "eval" / "summary.json"):
        from AllStageTraining.evaluation.tables import ScenarioTable

        return "skipped", ScenarioTable.from_csv(run_dir / "eval" / "table.csv", method)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    (run_dir / "method.json").write_text(json.dumps({"method": method, "split": str(split_path)}) + "\n")
    start = time.perf_counter()
    if cfg.seg.method != "zero-fill":
        source = None
        if search_root is not None:
            source = find_mae_source(search_root, mae_identity(cfg, split_path), run_dir)
        log(f"  [{method}] stage 1 (MAE): {stage_train_mae(cfg, split_path, run_dir, mae_from=source, log=log)}")
    log(f"  [{method}] stage 2 (segmenter): {stage_train_seg(cfg, split_path, run_dir, log=log)}")
    status, table = stage_evaluate(run_dir, load_split(split_path), method=method, device=device,
                                   scenarios=scenarios, log=log)
    log(f"  [{method}] evaluation: {status} ({time.perf_counter() - start:.0f} s for the cell)")
    return "done", table


# ------------------------------------------------------------------------------------------ comparison
def _format_ratio(ratio: float) -> str:
    return f"{ratio:g}"


def write_comparison(out_dir, results: dict, methods: list[str], ratios: list[float], seeds: list[int]):
    """comparison.csv / comparison.md / comparison.png from ``{(ratio, seed, method): ScenarioTable}``."""
    import csv
    import math
    from pathlib import Path

    from AllStageTraining.constants import REGIONS
    from AllStageTraining.evaluation.figures import method_comparison
    from AllStageTraining.evaluation.tables import ScenarioTable

    out_dir = Path(out_dir)
    rows = []
    for (ratio, seed, method), table in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                                methods.index(kv[0][2]))):
        means = table.overall_means("dice")
        pp = table.overall_means("dice", "postprocessed") if "postprocessed" in table.variants else None
        rows.append({"missing_ratio": ratio, "seed": seed, "method": method,
                     **{f"dice_{r}": means[r] for r in REGIONS}, "dice_mean": means["mean"],
                     "dice_ET_postprocessed": pp["ET"] if pp else math.nan,
                     "n_test_cases": len(table.case_ids),
                     "table": f"r{_format_ratio(ratio)}_s{seed}/{method}/eval/table.md"})
    with (out_dir / "comparison.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["method"])
        writer.writeheader()
        writer.writerows(rows)

    # pooled over seeds: one table per (method, ratio) with the case ids of every seed
    pooled: dict[str, dict[float, ScenarioTable]] = {}
    for (ratio, seed, method), table in results.items():
        target = pooled.setdefault(method, {}).setdefault(ratio, ScenarioTable(method))
        for case_id in table.case_ids:
            for variant in table.variants:
                for scenario in _scored_scenarios(table, case_id, variant):
                    target.add(f"s{seed}/{case_id}", scenario,
                               {r: (table.value(case_id, scenario, r, "dice", variant),
                                    table.value(case_id, scenario, r, "hd95", variant)) for r in REGIONS},
                               variant)

    lines = ["# Missing-ratio experiment: mean Dice (%) over the evaluated scenarios", "",
             f"Methods: {', '.join(methods)}; training missing ratios: {', '.join(map(_format_ratio, ratios))}; "
             f"seeds: {', '.join(map(str, seeds))} (pooled: every test case of every seed counts once).", ""]
    for ratio in ratios:
        lines += [f"## Training missing ratio {_format_ratio(ratio)}", "",
                  "| Method | WT | TC | ET | ET (pp) | Mean | Test cases |", "|---|---:|---:|---:|---:|---:|---:|"]
        for method in methods:
            table = pooled.get(method, {}).get(ratio)
            if table is None:
                lines.append(f"| {method} | – | – | – | – | – | 0 |")
                continue
            m = table.overall_means("dice")
            pp = table.overall_means("dice", "postprocessed")["ET"] if "postprocessed" in table.variants else math.nan
            cells = [_pct(m[r]) for r in REGIONS] + [_pct(pp), _pct(m["mean"])]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {len(table.case_ids)} |")
        lines.append("")
    lines += ["## Per-scenario tables", ""]
    for row in rows:
        lines.append(f"- ratio {_format_ratio(row['missing_ratio'])}, seed {row['seed']}, {row['method']}: "
                     f"[{row['table']}]({row['table']})")
    lines += ["", "![mean Dice per region, method and missing ratio](comparison.png)", ""]
    (out_dir / "comparison.md").write_text("\n".join(lines))
    if pooled:
        method_comparison({m: pooled[m] for m in methods if m in pooled}, out_dir / "comparison.png",
                          title="Mean Dice over the evaluated scenarios, per training missing ratio")
    return rows


def _scored_scenarios(table, case_id: str, variant: str) -> list[str]:
    from AllStageTraining.constants import SCENARIOS

    return [s.short for s in SCENARIOS if table.has(case_id, s.short, variant)]


def _pct(value: float) -> str:
    import math

    return "–" if value is None or math.isnan(value) else f"{100.0 * value:.1f}"


# ------------------------------------------------------------------------------------------------ run
def base_config(args):
    """The RunConfig every cell starts from: preset or --config, with the step and text-encoder overrides."""
    from AllStageTraining.config import RunConfig, preset

    cfg = RunConfig.load(args.config) if getattr(args, "config", None) else preset(args.preset)
    if args.steps_mae is not None:
        cfg.optim_mae.steps = args.steps_mae
    if args.steps_seg is not None:
        cfg.optim_seg.steps = args.steps_seg
    if getattr(args, "crop", None):
        if args.crop % 8:
            raise SystemExit(f"experiment: --crop must be a multiple of 8, not {args.crop}")
        cfg.data.crop_size = (args.crop,) * 3
    if args.text_pretrained:
        cfg.seg.text.pretrained = args.text_pretrained
    if args.allow_untrained_text_encoder:
        cfg.seg.text.allow_untrained = True
        if not args.text_pretrained:
            cfg.seg.text.pretrained = None
    return cfg


def _parse_list(text: str, kind, name: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"experiment: --{name} must be comma-separated numbers, got {text!r}")
    if not values:
        raise SystemExit(f"experiment: --{name} is empty")
    return values


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SystemExit(f"experiment: unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    from AllStageTraining.constants import SCENARIOS, scenario_by_short

    try:
        scenarios = SCENARIOS if args.scenarios == "all" else tuple(
            scenario_by_short(s.strip()) for s in args.scenarios.split(",") if s.strip())
    except ValueError as error:
        raise SystemExit(f"experiment: --scenarios: {error}")
    ratios = _parse_list(args.ratios, float, "ratios")
    seeds = _parse_list(args.seeds, int, "seeds")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from AllStageTraining.data.discovery import find_cases
    from AllStageTraining.data.splits import format_summary, make_split, save_split

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = base_config(args)
    (out / "experiment.json").write_text(json.dumps({
        "data": str(Path(args.data).resolve()), "methods": methods, "ratios": ratios, "seeds": seeds,
        "val_fraction": args.val_fraction, "test_fraction": args.test_fraction,
        "scenarios": [s.short for s in scenarios], "base_config": base.to_dict(),
    }, indent=2) + "\n")
    cases = find_cases(args.data)

    # MAE-producing methods first, so that the others can copy an identical MAE instead of training it
    order = sorted(methods, key=lambda m: (m == "zero-fill", METHODS.index(m)))
    results = {}
    n_cells = len(ratios) * len(seeds) * len(methods)
    k = 0
    start = time.perf_counter()
    for ratio in ratios:
        for seed in seeds:
            tag = f"r{_format_ratio(ratio)}_s{seed}"
            split_path = out / "splits" / f"{tag}.json"
            if not split_path.exists():
                split = make_split(cases, seed=seed, val_fraction=args.val_fraction,
                                   test_fraction=args.test_fraction, missing_ratio=ratio)
                save_split(split, split_path)
                print(f"split {tag}:\n{format_summary(split)}", flush=True)
            for method in order:
                k += 1
                cfg = method_config(base, method)
                cfg.seed = seed
                print(f"[{k}/{n_cells}] cell {tag}/{method}", flush=True)
                status, table = run_cell(cfg, method, split_path, out / tag / method, search_root=out,
                                         device=args.device, scenarios=scenarios,
                                         log=lambda s: print(s, flush=True))
                if status == "skipped":
                    print(f"  skipped: finished earlier ({tag}/{method}/eval/summary.json exists)", flush=True)
                means = table.overall_means("dice")
                print("  mean Dice: " + ", ".join(f"{r} {100 * v:.1f}" for r, v in means.items()), flush=True)
                results[(ratio, seed, method)] = table
                write_comparison(out, results, methods, ratios, seeds)
    print(f"experiment finished in {time.perf_counter() - start:.0f} s: {out / 'comparison.md'}", flush=True)
    return 0
