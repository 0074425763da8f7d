"""Paired differences at ratio 0.5 with seed 2's `ours` cell rerun (run from the repository root)."""
import numpy as np

from AllStageTraining.constants import SCENARIOS
from AllStageTraining.evaluation import comparison
from AllStageTraining.evaluation.bootstrap import bootstrap_mean, paired_difference
from AllStageTraining.evaluation.tables import ScenarioTable

D = "docs/science"
CELLS = {"ours (seed 2 rerun)": {0: f"{D}/r0.5_da/r0.5_s0/ours", 1: f"{D}/r0.5_da/r0.5_s1/ours",
                                 2: f"{D}/r0.5_ours_s2/r0.5_s2/ours"},
         "ours (r0.5_da, f90865b)": {s: f"{D}/r0.5_da/r0.5_s{s}/ours" for s in range(3)},
         "ours (r0.5_windows, a22af46)": {s: f"{D}/r0.5_windows/r0.5_s{s}/ours" for s in range(3)},
         **{m: {s: f"{D}/{f}/r0.5_s{s}/{m}" for s in range(3)}
            for f, m in (("r0.5_da", "ours-no-da"), ("r0.5_pop", "ours-no-pop"), ("r0.5_cons", "ours-no-cons"))}}
GROUPS = {"mean": None, "1 sequence": {s.short for s in SCENARIOS if len(s.modalities) == 1},
          "3 sequences": {s.short for s in SCENARIOS if len(s.modalities) == 3}, "all 4": {"FC12"}, "T1 alone": {"1"}}


def case_means(path, shorts):
    """{case: Dice averaged over the scenarios in ``shorts`` (all if None), then over WT, TC, ET}."""
    table = ScenarioTable.from_csv(f"{path}/eval/table.csv")
    return {case: v["mean"] for case, v in comparison.case_means(table, scenarios=shorts and frozenset(shorts)).items()}


def seed_mean(method, seed):
    """One cell's mean Dice (%) over its cases and all scenarios."""
    return 100 * np.mean(list(case_means(CELLS[method][seed], None).values()))


def keyed(method, group, seeds=(0, 1, 2)):
    return {(s, c): v for s in seeds for c, v in case_means(CELLS[method][s], GROUPS[group]).items()}


print("| cell | mean Dice | seed 0 | seed 1 | seed 2 |\n|---|---:|---:|---:|---:|")
for method in CELLS:
    seeds = [seed_mean(method, s) for s in range(3)]
    print(f"| `{method}` | {bootstrap_mean(keyed(method, 'mean')).format()} | "
          + " | ".join(f"{v:.1f}" for v in seeds) + " |")
print("\n| seed 2 only | mean |\n|---|---:|")
for other in ("ours (r0.5_da, f90865b)", "ours (r0.5_windows, a22af46)"):
    d = paired_difference(keyed("ours (seed 2 rerun)", "mean", (2,)), keyed(other, "mean", (2,)))
    print(f"| rerun - `{other}` | {d.format_difference()} |")
for reference in ("ours (seed 2 rerun)", "ours (r0.5_windows, a22af46)"):
    print(f"\n| minus `{reference}` | " + " | ".join(GROUPS) + " |\n|---|" + "---:|" * len(GROUPS))
    for method in ("ours-no-da", "ours-no-pop", "ours-no-cons"):
        print(f"| `{method}` | " + " | ".join(paired_difference(keyed(method, g), keyed(reference, g))
                                            .format_difference() for g in GROUPS) + " |")

# The ours-no-da cells trained again (docs/science/r0.5_noda_rerun), against both ours references and the first run.
RERUN = "ours-no-da (rerun)"
CELLS[RERUN] = {s: f"{D}/r0.5_noda_rerun/r0.5_s{s}/ours-no-da" for s in range(3)}
print(f"\n| `{RERUN}` minus | " + " | ".join(GROUPS) + " | seeds 0 / 1 / 2 |\n|---|" + "---:|" * len(GROUPS) + "---|")
for reference in ("ours (seed 2 rerun)", "ours (r0.5_windows, a22af46)", "ours-no-da"):
    seeds = " / ".join(f"{seed_mean(RERUN, s) - seed_mean(reference, s):+.1f}" for s in range(3))
    print(f"| `{reference}` | " + " | ".join(paired_difference(keyed(RERUN, g), keyed(reference, g))
                                           .format_difference() for g in GROUPS) + f" | {seeds} |")
