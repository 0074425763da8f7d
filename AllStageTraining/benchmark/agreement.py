"""How far bfloat16 inference moves the outputs from float32: on trained weights, for every scenario of a case.

For each of the 15 scenarios (all four sequences first), the case's given sequences go through two ``Predictor``s
of the same bundle, one in float32 and one in bfloat16, exactly as ``predict`` runs them. Per scenario: the Dice of
the bfloat16 labels against the float32 ones for WT, TC and ET (1.0 = identical; a region empty in both counts 1.0,
so ``voxels`` says how many voxels each region holds in float32), and for the sequences the MAE synthesized the
largest and the mean absolute difference in z-score units (the written volumes are ``RECON_SCALE * z +
RECON_OFFSET`` inside the brain and 0 outside; the mean is over the voxels where either is non-zero). ``worst``
holds the lowest Dice and the largest difference over the scenarios, ``worst_default`` the same over the scenarios
that the default precision (``auto``) runs in bfloat16 (it runs the others in float32, see
``inference.predictor.BFLOAT16_NEEDS``; None where it runs none, e.g. without native bfloat16); each row's
``default`` says which.
"""

from __future__ import annotations

from ..runtime import resolve_precision, set_threads

PRECISIONS = ("float32", "bfloat16")


def labels_agreement(a, b) -> dict:
    """Dice per region (WT, TC, ET) between two label maps (arrays), and ``voxels``: each region's voxels in ``a``."""
    from ..constants import REGIONS
    from ..data.labels import regions_from_labels
    from ..evaluation.metrics import region_dice

    out: dict = {region: round(dice, 5) for region, dice in region_dice(b, a).items()}
    out["voxels"] = {region: int(mask.sum()) for region, mask in zip(REGIONS, regions_from_labels(a))}
    return out


def label_agreement(path_a: str, path_b: str) -> dict:
    """``labels_agreement`` of two label-map files."""
    import SimpleITK as sitk

    return labels_agreement(*(sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (path_a, path_b)))


def synthesis_difference(a: dict, b: dict) -> dict:
    """{"synth_max_abs_z", "synth_mean_abs_z"} between two {modality: synthesized image} of one scenario, in
    z-score units over all its synthesized sequences; None for both when nothing was synthesized."""
    import numpy as np
    import SimpleITK as sitk

    from ..inference.predictor import RECON_SCALE

    if not a:
        return {"synth_max_abs_z": None, "synth_mean_abs_z": None}
    largest, total, count = 0.0, 0.0, 0
    for modality, image in a.items():
        x, y = (sitk.GetArrayViewFromImage(i).astype(np.float64) for i in (image, b[modality]))
        inside = (x != 0) | (y != 0)
        difference = np.abs(x - y)[inside] / RECON_SCALE
        largest = max(largest, float(difference.max(initial=0.0)))
        total, count = total + float(difference.sum()), count + difference.size
    return {"synth_max_abs_z": round(largest, 5), "synth_mean_abs_z": round(total / max(count, 1), 6)}


def worst(rows: dict[str, dict]) -> dict:
    """The lowest Dice per region and the largest synthesis difference over ``rows`` (scenario -> row); over
    none, every Dice is 1.0."""
    from ..constants import REGIONS

    out = {region: min((row[region] for row in rows.values()), default=1.0) for region in REGIONS}
    differences = [row["synth_max_abs_z"] for row in rows.values() if row["synth_max_abs_z"] is not None]
    out["synth_max_abs_z"] = max(differences) if differences else None
    return out


def child_agreement(spec: dict) -> dict:
    """bfloat16 against float32 for the scenarios of one case (see the module docstring).

    spec: bundle, device, threads, images ({modality: path}, all four), scenarios (optional list of short
    names; default all 15), threshold (optional: the labels' probability threshold instead of the bundle's;
    the outputs of a briefly trained model all lie below 0.5, and a lower threshold gives its labels a
    boundary to disagree on). Returns {"scenarios": {short: row}, "full_set": row or None, "worst": ...,
    "worst_default": ...}."""
    set_threads(spec["threads"])
    import SimpleITK as sitk

    from ..constants import FULL_SCENARIO, MODALITIES, SCENARIOS
    from ..inference.predictor import Predictor, scenario_precision

    predictors = {p: Predictor.from_bundle(spec["bundle"], spec["device"], precision=p) for p in PRECISIONS}
    for predictor in predictors.values():
        predictor.cfg.inference.threshold = spec.get("threshold") or predictor.cfg.inference.threshold
    images = {m: sitk.ReadImage(str(spec["images"][m])) for m in MODALITIES}
    native = resolve_precision("auto", predictors["float32"].device)  # what "auto" runs where it may
    chosen = [s for s in SCENARIOS if not spec.get("scenarios") or s.short in spec["scenarios"]]
    rows = {}
    for scenario in sorted(chosen, key=lambda s: -len(s.modalities)):
        given = {m: (images[m] if m in scenario.modalities else None) for m in MODALITIES}
        a, b = (predictors[p].predict(given) for p in PRECISIONS)
        rows[scenario.short] = {**labels_agreement(sitk.GetArrayFromImage(a.labels), sitk.GetArrayFromImage(b.labels)),
                                **synthesis_difference(a.reconstructions, b.reconstructions),
                                "default": scenario_precision("auto", native, scenario)}
    by_default = {short: row for short, row in rows.items() if row["default"] == "bfloat16"}
    return {"precisions": list(PRECISIONS), "scenarios": rows, "full_set": rows.get(FULL_SCENARIO.short),
            "worst": worst(rows), "worst_default": worst(by_default) if by_default else None}
