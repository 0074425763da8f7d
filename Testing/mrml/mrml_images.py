"""Small synthetic MRI volumes and BraTS label maps with non-trivial geometry, for the MRML tests."""

import numpy as np
import SimpleITK as sitk

#: 240x240x155 is the BraTS grid; tests use smaller grids with the same kind of geometry.
DIRECTION_LPS_ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def make_image(shape=(24, 28, 32), spacing=(1.0, 1.0, 1.0), origin=(12.0, -30.5, 4.0),
               direction=DIRECTION_LPS_ROTATED, seed=0, kind="mri") -> sitk.Image:
    """A SimpleITK image of ``shape`` (z, y, x): a bright ellipsoid 'brain' (mri) or a BraTS label map (labels)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = (z / 0.8) ** 2 + (y / 0.85) ** 2 + (x / 0.9) ** 2
    if kind == "labels":
        array = np.zeros(shape, np.uint8)
        array[radius < 0.35] = 2
        array[radius < 0.12] = 1
        array[(radius < 0.05) & (x > 0)] = 4
    else:
        array = ((radius < 1) * (100 + 20 * rng.standard_normal(shape))).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image
