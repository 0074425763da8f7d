"""Paired differences between grid cells that `compare` cannot pair: a cell run again beside its first run, and
ablations against either run. Run from the repository root: `python docs/science/paired.py r0.5` (the tables of
docs/science/r0.5_ours_s2/paired.md) or `python docs/science/paired.py r0.7` (docs/science/r0.7_ablations/paired.md)."""
import sys

import numpy as np

from AllStageTraining.constants import SCENARIOS
from AllStageTraining.evaluation import comparison
from AllStageTraining.evaluation.bootstrap import bootstrap_mean, paired_difference
from AllStageTraining.evaluation.tables import ScenarioTable

D = "docs/science"
SEEDS = (0, 1, 2)
GROUPS = {"mean": None, "1 sequence": {s.short for s in SCENARIOS if len(s.modalities) == 1},
          "3 sequences": {s.short for s in SCENARIOS if len(s.modalities) == 3}, "all 4": {"FC12"}, "T1 alone": {"1"}}


def cells_of(folder, method, setting):
    """{seed: cell folder} of one method in one experiment folder under docs/science."""
    return {s: f"{D}/{folder}/{setting}_s{s}/{method}" for s in SEEDS}


def case_means(path, shorts):
    """{case: Dice averaged over the scenarios in ``shorts`` (all if None), then over WT, TC, ET}."""
    table = ScenarioTable.from_csv(f"{path}/eval/table.csv")
    return {case: v["mean"] for case, v in comparison.case_means(table, scenarios=shorts and frozenset(shorts)).items()}


def seed_mean(cells, seed):
    """One cell's mean Dice (%) over its cases and all scenarios."""
    return 100 * np.mean(list(case_means(cells[seed], None).values()))


def keyed(cells, group, seeds=SEEDS):
    """{(seed, case): mean Dice over the group's scenarios} of one method's cells."""
    return {(s, c): v for s in seeds for c, v in case_means(cells[s], GROUPS[group]).items()}


def print_cells(cells):
    print("| cell | mean Dice | seed 0 | seed 1 | seed 2 |\n|---|---:|---:|---:|---:|")
    for name, by_seed in cells.items():
        print(f"| `{name}` | {bootstrap_mean(keyed(by_seed, 'mean')).format()} | "
              + " | ".join(f"{seed_mean(by_seed, s):.1f}" for s in SEEDS) + " |")


def print_differences(cells, minuends, reference, seeds_column=False):
    """Each of ``minuends`` minus ``reference`` by group of scenarios (and per seed, unpaired, if asked)."""
    extra = " seeds 0 / 1 / 2 |" if seeds_column else ""
    print(f"\n| minus `{reference}` | " + " | ".join(GROUPS) + f" |{extra}\n|---|" + "---:|" * len(GROUPS)
          + ("---|" if seeds_column else ""))
    for name in minuends:
        row = " | ".join(paired_difference(keyed(cells[name], g), keyed(cells[reference], g)).format_difference()
                         for g in GROUPS)
        seeds = " / ".join(f"{seed_mean(cells[name], s) - seed_mean(cells[reference], s):+.1f}" for s in SEEDS)
        print(f"| `{name}` | {row} |" + (f" {seeds} |" if seeds_column else ""))


def ratio_05():
    """Seed 2's `ours` rerun, the distribution-approximation ablations (first runs and the `ours-no-da` rerun) and
    co-distillation's ablation (first run and rerun), against `ours` references of different commits."""
    rerun = "ours (seed 2 rerun)"
    cells = {rerun: {**cells_of("r0.5_da", "ours", "r0.5"), 2: f"{D}/r0.5_ours_s2/r0.5_s2/ours"},
             "ours (r0.5_da, f90865b)": cells_of("r0.5_da", "ours", "r0.5"),
             "ours (r0.5_windows, a22af46)": cells_of("r0.5_windows", "ours", "r0.5"),
             **{m: cells_of(f, m, "r0.5") for f, m in (("r0.5_da", "ours-no-da"), ("r0.5_pop", "ours-no-pop"),
                                                        ("r0.5_cons", "ours-no-cons"))}}
    print_cells(cells)
    print("\n| seed 2 only | mean |\n|---|---:|")
    for other in ("ours (r0.5_da, f90865b)", "ours (r0.5_windows, a22af46)"):
        d = paired_difference(keyed(cells[rerun], "mean", (2,)), keyed(cells[other], "mean", (2,)))
        print(f"| rerun - `{other}` | {d.format_difference()} |")
    for reference in (rerun, "ours (r0.5_windows, a22af46)"):
        print_differences(cells, ("ours-no-da", "ours-no-pop", "ours-no-cons"), reference)
    cells["ours-no-da (rerun)"] = cells_of("r0.5_noda_rerun", "ours-no-da", "r0.5")
    for reference in (rerun, "ours (r0.5_windows, a22af46)", "ours-no-da"):
        print_differences(cells, ("ours-no-da (rerun)",), reference, seeds_column=True)
    # Co-distillation's ablation (r0.5_windows_no_distill) against the `ours` cells whose distillation ran in float32.
    cells["ours-no-distill"] = cells_of("r0.5_windows_no_distill", "ours-no-distill", "r0.5")
    for reference in (rerun, "ours (r0.5_da, f90865b)", "ours (r0.5_windows, a22af46)"):
        print_differences(cells, ("ours-no-distill",), reference, seeds_column=True)
    cells["ours-no-distill (rerun)"] = cells_of("r0.5_nodistill_rerun", "ours-no-distill", "r0.5")
    for reference in (rerun, "ours (r0.5_windows, a22af46)", "ours-no-distill"):
        print_differences(cells, ("ours-no-distill (rerun)",), reference, seeds_column=True)


#: The first grid's ablations, then co-distillation's terms one at a time, trained later in the same folder.
ABLATIONS_07 = ("ours-no-distill", "ours-no-personal", "ours-no-da", "ours-no-logit-distill", "ours-no-feat-distill")


def ratio_07():
    """The ablations at ratio 0.7 with their own `ours` (r0.7_ablations), and that `ours` against the first one."""
    cells = {"ours": cells_of("r0.7_ablations", "ours", "r0.7"),
             "ours (r0.7_windows, 2107e07)": cells_of("r0.7_windows", "ours", "r0.7"),
             **{m: cells_of("r0.7_ablations", m, "r0.7") for m in (*ABLATIONS_07, "ours-no-personal-no-distill")}}
    print_cells(cells)
    print_differences(cells, ("ours",), "ours (r0.7_windows, 2107e07)", seeds_column=True)
    for reference in ("ours", "ours (r0.7_windows, 2107e07)"):
        print_differences(cells, ABLATIONS_07, reference, seeds_column=True)
    # the logit term on top of the feature term's removal; co-distillation in the model without the hyper-network
    print_differences(cells, ("ours-no-distill",), "ours-no-feat-distill", seeds_column=True)
    print_differences(cells, ("ours-no-personal-no-distill",), "ours-no-personal", seeds_column=True)


if __name__ == "__main__":
    {"r0.5": ratio_05, "r0.7": ratio_07}[sys.argv[1]]()
