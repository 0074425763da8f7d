"""Synthetic BraTS-style cases built on the MNI152 anatomy shipped by nilearn.

``synthesize(out_dir, n, spacing=2, seed=0, start_index=1) -> list[Path]`` writes cases in the BraTS 2020
layout; ``montage(case_dirs, png_path)`` draws them. Modules: ``fields`` (smooth random fields),
``anatomy`` (template on the BraTS grid, deformation), ``tumour`` (glioma shapes and compartments),
``contrast`` (sequence signals, bias, noise), ``generator`` (cases and files), ``montage`` (figure).
"""

from .generator import SynthCase, case_id, generate_case, synthesize
from .montage import montage

__all__ = ["SynthCase", "case_id", "generate_case", "montage", "synthesize"]
