"""Smooth random fields, the building block of deformations, tumour shapes, textures and bias fields.

A field is white noise on a coarse lattice of nodes, spread to every voxel by a separable Gaussian kernel
(three small matrix products, so a 1 mm brain-sized field costs milliseconds). Each axis' weights are
normalized so that every voxel has unit variance: the fields are zero-mean, unit-std and stationary.
Fine fields are white noise filtered by a Gaussian instead.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

FINE_SCALE = 6.0  # voxels; finer fields come from filtered white noise (the node lattice would be too dense)


def _axis_weights(length: int, scale: float) -> np.ndarray:
    """(length, nodes) Gaussian weights from lattice nodes spaced ``scale / 2`` apart, unit L2 norm per row."""
    step = max(scale / 2.0, 0.5)
    n_nodes = int(np.ceil((length - 1) / step)) + 5
    nodes = (np.arange(n_nodes) - 2) * step  # two extra nodes beyond each end: no edge fall-off
    positions = np.arange(length, dtype=np.float64)[:, None]
    weights = np.exp(-0.5 * ((positions - nodes[None, :]) / (scale / 2.0)) ** 2)
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    return weights.astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """A smooth random field, float32 of ``shape`` (3-D), zero mean and unit std at every voxel.

    ``scale`` is the correlation length in voxels (features about that wide). Fine fields (scale below
    ``FINE_SCALE``) are Gaussian-filtered white noise, normalized by their sample std.
    """
    if scale < FINE_SCALE:
        field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), scale / 2.0, truncate=3.0)
        return field / max(float(field.std()), 1e-6)
    wz, wy, wx = (_axis_weights(n, scale) for n in shape)
    nodes = rng.standard_normal((wz.shape[1], wy.shape[1], wx.shape[1]), dtype=np.float32)
    field = nodes @ wx.T  # (nz, ny, X)
    field = wy @ field  # (nz, Y, X)
    field = (wz @ field.reshape(field.shape[0], -1)).reshape(shape)  # (Z, Y, X)
    return np.ascontiguousarray(field, dtype=np.float32)


def top_n_mask(values: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the ``n`` largest ``values`` among the ``candidates`` voxels (all of them if fewer)."""
    pool = values[candidates]
    if n <= 0 or pool.size == 0:
        return np.zeros(values.shape, bool)
    if n >= pool.size:
        return candidates.copy()
    threshold = np.partition(pool, pool.size - n)[pool.size - n]
    return candidates & (values >= threshold)
