"""``montage``: one row per case, the axial slice through the most tumour: FLAIR, T1ce, T1, T2 and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..constants import LABEL_ED, LABEL_ET, LABEL_NCR, MODALITIES, MODALITY_DISPLAY

#: Overlay colours (RGB 0..1): the usual BraTS viewer colours.
LABEL_COLOURS: dict[int, tuple[float, float, float]] = {
    LABEL_NCR: (0.85, 0.15, 0.15),  # red
    LABEL_ED: (0.2, 0.8, 0.2),  # green
    LABEL_ET: (1.0, 0.85, 0.1),  # yellow
}


def _read_oriented(path: Path) -> np.ndarray:
    """Array (Z, Y, X) of the image oriented to LPS: rows anterior->posterior, columns right->left
    (radiological display: the patient's right on the viewer's left)."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS"))


def _window(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    values = image[mask] if mask.any() else image.ravel()
    return float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))


def montage(case_dirs: list[str | Path], png_path: str | Path, *, max_cases: int = 6) -> Path:
    """Draw the first ``max_cases`` cases of ``case_dirs`` (BraTS 2020 layout) into ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    case_dirs = [Path(d) for d in case_dirs][:max_cases]
    if not case_dirs:
        raise ValueError("montage needs at least one case folder")
    columns = [*(MODALITY_DISPLAY[m] for m in MODALITIES), "labels on FLAIR"]
    fig, axes = plt.subplots(len(case_dirs), len(columns), figsize=(2.6 * len(columns), 2.9 * len(case_dirs)), squeeze=False)
    fig.patch.set_facecolor("black")
    for row, case_dir in enumerate(case_dirs):
        volumes = {m: _read_oriented(case_dir / f"{case_dir.name}_{m}.nii.gz") for m in MODALITIES}
        labels = _read_oriented(case_dir / f"{case_dir.name}_seg.nii.gz")
        z = int(np.argmax((labels > 0).sum(axis=(1, 2)))) if labels.any() else labels.shape[0] // 2
        brain = np.any([v[z] > 0 for v in volumes.values()], axis=0)
        ys, xs = np.nonzero(brain)
        crop = (slice(max(ys.min() - 3, 0), ys.max() + 4), slice(max(xs.min() - 3, 0), xs.max() + 4)) if ys.size else (slice(None), slice(None))
        for col, modality in enumerate(MODALITIES):
            image = volumes[modality][z].astype(np.float32)
            low, high = _window(image, brain)
            axes[row, col].imshow(image[crop], cmap="gray", vmin=low, vmax=high, interpolation="bilinear")
        flair = volumes["flair"][z].astype(np.float32)
        low, high = _window(flair, brain)
        rgb = np.repeat(np.clip((flair - low) / max(high - low, 1e-6), 0, 1)[..., None], 3, axis=2)
        for value, colour in LABEL_COLOURS.items():
            where = labels[z] == value
            rgb[where] = 0.45 * rgb[where] + 0.55 * np.array(colour)
        axes[row, -1].imshow(rgb[crop], interpolation="nearest")
        axes[row, 0].set_ylabel(f"{case_dir.name}\naxial {z}", color="white", fontsize=10)
        for col, title in enumerate(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if row == 0:
                ax.set_title(title, color="white", fontsize=12)
    handles = [Patch(color=c, label=f"{n} ({v})") for v, c, n in ((LABEL_NCR, LABEL_COLOURS[LABEL_NCR], "NCR"), (LABEL_ED, LABEL_COLOURS[LABEL_ED], "ED"), (LABEL_ET, LABEL_COLOURS[LABEL_ET], "ET"))]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, labelcolor="white", fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=90, facecolor=fig.get_facecolor())
    plt.close(fig)
    return png_path
