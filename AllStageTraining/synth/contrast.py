"""Sequence intensities: tissue signals that follow real MRI, then bias field, partial volume and Rician noise.

Signals are relative (each sequence's white matter near 1 on T1). Healthy T1 is the MNI152 T1 template
itself; the other sequences mix grey matter, white matter and CSF signals by their probabilities (T1ce
half template, half mixture). Tumour tissues replace the healthy signal; edema keeps 30% of it, so
anatomy shows faintly through, more so far from the core. Each sequence carries something the others lack:

- T1ce: enhancing tumour (bright on T1ce only);
- T1: haemorrhage (bright on T1 and T1ce: without T1 it mimics enhancement);
- T2: non-enhancing tumour vs edema (T2-darker than edema, as the BraTS annotation protocol defines it;
  nearly equal on FLAIR and T1);
- FLAIR: edema vs CSF and cortex (bright edema on dark CSF; on T2 edema sits between grey matter and CSF),
  while fluid necrosis has a case-dependent FLAIR signal.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..constants import MODALITIES
from .fields import smooth_field
from .tumour import EDEMA, TISSUE_NAMES

#: Mean relative signal per tissue, in MODALITIES order (flair, t1ce, t1, t2). Necrosis on FLAIR is drawn
#: per case in ``NECROSIS_FLAIR_RANGE`` (fluid suppressed or proteinaceous).
SIGNAL: dict[str, tuple[float, float, float, float]] = {
    "wm": (0.70, 1.00, 1.00, 0.55),
    "gm": (0.88, 0.76, 0.72, 0.80),
    "csf": (0.12, 0.24, 0.22, 1.55),
    "edema": (1.55, 0.82, 0.80, 1.25),  # edema keeps EDEMA_HEALTHY_SHARE of the healthy signal on top
    "nonenhancing": (1.30, 0.84, 0.84, 0.75),
    "necrosis": (np.nan, 0.38, 0.36, 1.45),
    "enhancing": (1.32, 1.60, 0.82, 1.02),
    "haemorrhage": (0.95, 1.32, 1.30, 0.40),
}
NECROSIS_FLAIR_RANGE = (0.45, 1.2)
EDEMA_HEALTHY_SHARE = 0.3  # share of the healthy signal that edema keeps next to the core
EDEMA_FADE_MM = 15.0  # further out, edema fades towards the healthy signal (half of the way at infinity)
BRAIN_THRESHOLD = 0.5  # brain-mask fraction above which a voxel is brain (non-zero in every sequence)


def _case_signals(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """This case's signal table: the mean table with a 4% random deviation per entry."""
    table = {}
    for tissue, values in SIGNAL.items():
        row = np.array(values, dtype=np.float64)
        if tissue == "necrosis":
            row[0] = rng.uniform(*NECROSIS_FLAIR_RANGE)
        table[tissue] = row * (1.0 + 0.04 * rng.standard_normal(4))
    return table


def render_sequences(
    rng: np.random.Generator, maps: dict[str, np.ndarray], tissue: np.ndarray, spacing: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four int16 images (Z, Y, X) keyed by modality, and the bool brain mask they are non-zero on.

    ``maps``: deformed t1 template, gm, wm, brain fraction (float32); ``tissue``: uint8 tumour codes.
    Each image has its own global scale (white matter at 100-1500), bias field and noise level.
    """
    signals = _case_signals(rng)
    brain = maps["brain"] > BRAIN_THRESHOLD
    gm, wm = maps["gm"], maps["wm"]
    csf = np.clip(maps["brain"] - gm - wm, 0.0, 1.0)
    template_t1 = maps["t1"]
    tumour = tissue > 0
    tumour_box = ndi.find_objects(tumour.astype(np.uint8))
    brain_index = np.flatnonzero(brain)
    if tumour_box:
        box = tumour_box[0]
        local = tissue[box]
        # edema fades with distance from the tumour core: full strength next to it, about half 2 cm away
        distance_mm = ndi.distance_transform_edt((local == 0) | (local == EDEMA)) * spacing
        edema_weight = (1.0 - EDEMA_HEALTHY_SHARE) * (0.5 + 0.5 * np.exp(-distance_mm / EDEMA_FADE_MM))
    images = {}
    for channel, modality in enumerate(MODALITIES):
        mixture = gm * signals["gm"][channel] + wm * signals["wm"][channel] + csf * signals["csf"][channel]
        if modality == "t1":
            healthy = template_t1
        elif modality == "t1ce":
            healthy = 0.5 * template_t1 + 0.5 * mixture
        else:
            healthy = mixture
        image = np.array(healthy, dtype=np.float32)
        if tumour_box:
            heterogeneity = 1.0 + 0.07 * smooth_field(rng, local.shape, max(1.0, 3.0 / spacing))
            target = image[box]
            for code, name in TISSUE_NAMES.items():
                where = local == code
                value = signals[name][channel] * heterogeneity[where]
                if code == EDEMA:
                    weight = edema_weight[where]
                    value = (1.0 - weight) * target[where] + weight * value
                target[where] = value
        image *= np.exp(rng.uniform(0.05, 0.15) * smooth_field(rng, image.shape, 70.0 / spacing))
        image = ndi.gaussian_filter(image, 0.6 if spacing == 1 else 0.45)
        level = np.exp(rng.uniform(np.log(100.0), np.log(1500.0)))
        sigma = rng.uniform(0.015, 0.035)
        inside = image.ravel()[brain_index].astype(np.float32)
        real = inside + sigma * rng.standard_normal(inside.size, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(inside.size, dtype=np.float32)
        magnitude = np.sqrt(real * real + imaginary * imaginary) * level
        out = np.zeros(image.size, np.int16)
        out[brain_index] = np.clip(np.rint(magnitude), 1, np.iinfo(np.int16).max).astype(np.int16)
        images[modality] = out.reshape(image.shape)
    return images, brain
