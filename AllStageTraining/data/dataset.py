"""Training crops and whole validation cases as torch Datasets over preprocessed cases.

Crops, flips and intensity jitter are written in numpy here rather than with MONAI's RandSpatialCrop /
SpatialPad / RandFlip, because every item must also report ``box``, the crop's exact extent in the case's
normalized coordinates (which MONAI's transforms do not track through padding and flips), and because the
randomness must come from one per-item generator so that a resumed run sees the same crops.

Normalized coordinates: voxel ``i`` of an axis with ``S`` voxels in the preprocessed (cropped) case sits at
``-1 + 2 i / (S - 1)``, the convention of ``torch.nn.functional.grid_sample(..., align_corners=True)``.
``box[a] = (first, last)`` gives the coordinates of the crop's first and last voxel along array axis ``a``
(z, y, x order); padded crops reach beyond [-1, 1]; a flip of axis ``a`` swaps the two numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .labels import regions_from_labels
from .preprocess import PreprocessedCase

_MAX_REJECTION_TRIES = 64


def normalized_box(start, size, full_shape) -> np.ndarray:
    """float32 (3, 2): normalized coordinates of voxels ``start`` and ``start + size - 1`` per axis."""
    box = np.zeros((3, 2), dtype=np.float32)
    for axis in range(3):
        scale = 2.0 / max(full_shape[axis] - 1, 1)
        box[axis] = (-1.0 + scale * start[axis], -1.0 + scale * (start[axis] + size[axis] - 1))
    return box


def extract_window(array: np.ndarray, start, size, fill=0) -> np.ndarray:
    """The window ``[start, start + size)`` of the last three axes of ``array``; outside voxels get ``fill``.

    ``start`` may be negative and the window may run past the end (padding)."""
    spatial = array.shape[-3:]
    out = np.full(array.shape[:-3] + tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for axis in range(3):
        lo, hi = max(start[axis], 0), min(start[axis] + size[axis], spatial[axis])
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start[axis], hi - start[axis]))
    out[(...,) + tuple(dst)] = array[(...,) + tuple(src)]
    return out


def _random_voxel(mask: np.ndarray, rng: np.random.Generator, bbox=None):
    """A random nonzero voxel of ``mask`` (rejection sampling in ``bbox``, then an exact draw), or None."""
    if bbox is None:
        bbox = [(0, s) for s in mask.shape]
    for _ in range(_MAX_REJECTION_TRIES):
        voxel = tuple(int(rng.integers(a, b)) for a, b in bbox)
        if mask[voxel]:
            return voxel
    hits = np.flatnonzero(mask)
    if hits.size == 0:
        return None
    return tuple(int(v) for v in np.unravel_index(hits[int(rng.integers(hits.size))], mask.shape))


def _mask_bbox(mask: np.ndarray):
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return box


def _item(case: PreprocessedCase, image: np.ndarray, brain: np.ndarray, label: np.ndarray | None,
          box: np.ndarray) -> dict:
    regions = (regions_from_labels(label) if label is not None
               else np.zeros((3, *brain.shape), dtype=bool))
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
        "available": torch.from_numpy(np.array(case.available, dtype=bool)),
        "label": torch.from_numpy(np.ascontiguousarray(regions, dtype=np.float32)),
        "brain": torch.from_numpy(np.ascontiguousarray(brain[None], dtype=np.float32)),
        "box": torch.from_numpy(np.ascontiguousarray(box, dtype=np.float32)),
        "case_id": case.case_id,
    }


class TrainingCrops(Dataset):
    """Random augmented crops of preprocessed cases.

    Item ``index`` uses case ``index % len(cases)`` and a generator seeded from ``(seed, epoch, index)``, so
    the same (seed, epoch, index) always gives the same crop. Call ``set_epoch`` before each epoch (as with a
    DistributedSampler). Items: ``image`` float32 (4, D, H, W); ``available`` bool (4,); ``label`` float32
    (3, D, H, W) WT/TC/ET maps; ``brain`` float32 (1, D, H, W); ``box`` float32 (3, 2); ``case_id`` str.
    """

    def __init__(self, cases: list[PreprocessedCase], cfg: DataConfig, *, seed: int, length: int):
        if not cases:
            raise ValueError("TrainingCrops needs at least one case")
        self.cases = cases
        self.cfg = cfg
        self.seed = int(seed)
        self.length = int(length)
        self.epoch = 0
        self._tumour_boxes: dict[int, list | None] = {}

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def generator(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def _centre(self, number: int, case: PreprocessedCase, rng: np.random.Generator):
        if case.label is not None and rng.random() < self.cfg.foreground_crop_fraction:
            if number not in self._tumour_boxes:
                self._tumour_boxes[number] = _mask_bbox(np.asarray(case.label) > 0)
            box = self._tumour_boxes[number]
            if box is not None:
                return _random_voxel(case.label, rng, box)  # label values > 0 count as True
        voxel = _random_voxel(case.brain, rng)
        return voxel if voxel is not None else tuple(s // 2 for s in case.brain.shape)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = self.generator(index)
        number = index % len(self.cases)
        case = self.cases[number]
        shape = case.brain.shape
        size = tuple(int(s) for s in self.cfg.crop_size)
        centre = self._centre(number, case, rng)
        start = []
        for axis in range(3):
            lo, hi = sorted((0, shape[axis] - size[axis]))  # padded axes: the crop covers the whole volume
            start.append(int(np.clip(centre[axis] - size[axis] // 2, lo, hi)))
        image = extract_window(case.image, start, size).astype(np.float32)
        brain = extract_window(case.brain, start, size, fill=False)
        label = extract_window(case.label, start, size) if case.label is not None else None
        box = normalized_box(start, size, shape)

        for axis in range(3):
            if rng.random() < self.cfg.flip_prob:
                image = np.flip(image, axis=1 + axis)
                brain = np.flip(brain, axis=axis)
                label = np.flip(label, axis=axis) if label is not None else None
                box[axis] = box[axis, ::-1].copy()

        available = np.asarray(case.available, dtype=bool)
        scales = 1.0 + rng.uniform(-self.cfg.intensity_scale, self.cfg.intensity_scale, size=len(available))
        shifts = rng.uniform(-self.cfg.intensity_shift, self.cfg.intensity_shift, size=len(available))
        image = np.ascontiguousarray(image)
        for channel, present in enumerate(available):
            if present:
                image[channel] = np.where(brain, image[channel] * scales[channel] + shifts[channel], 0.0)
            else:
                image[channel] = 0.0
        return _item(case, image, brain, label, box)


class ValidationCases(Dataset):
    """Whole preprocessed cases, zero-padded at the end of each axis to a multiple of ``multiple``.

    Items as TrainingCrops (``box`` spans the padded volume, starting at -1) plus ``shape`` int64 (3,): the
    unpadded (Z, Y, X), so that ``output[..., :Z, :Y, :X]`` lies on the case's cropped grid. Use batch size 1.
    """

    def __init__(self, cases: list[PreprocessedCase], multiple: int = 8):
        self.cases = cases
        self.multiple = int(multiple)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        case = self.cases[index]
        shape = case.brain.shape
        size = tuple(-(-s // self.multiple) * self.multiple for s in shape)
        start = (0, 0, 0)
        image = extract_window(case.image, start, size).astype(np.float32)
        image[~np.asarray(case.available, dtype=bool)] = 0.0
        brain = extract_window(case.brain, start, size, fill=False)
        label = extract_window(case.label, start, size) if case.label is not None else None
        item = _item(case, image, brain, label, normalized_box(start, size, shape))
        item["shape"] = torch.tensor(shape, dtype=torch.int64)
        return item
