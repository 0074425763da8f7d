"""What the benchmark predicts: one synthetic 240x240x155 case as NIfTI files, and the ``paper`` architecture
with random weights as a bundle."""

from __future__ import annotations

from pathlib import Path

#: Size of the random unit-vector scenario embeddings (CLIP ViT-B-32's; the cost is the same as CLIP's).
EMBED_DIM = 512


def make_case(out_dir: Path, seed: int = 0) -> tuple[dict[str, Path], str]:
    """One 240x240x155 case as NIfTI files: ({modality: path}, how it was made)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        from ..data.discovery import find_cases
        from ..synth import synthesize

        case_dir = synthesize(out_dir, 1, spacing=1, seed=seed)[0]
        case = find_cases(case_dir.parent)[0]
        return dict(case.images), "synth (MNI152 anatomy, 1 mm)"
    except Exception as error:  # fall back to random data in a brain-shaped mask
        import numpy as np
        import SimpleITK as sitk

        from ..constants import MODALITIES

        rng = np.random.default_rng(seed)
        zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in (155, 240, 240)], indexing="ij")
        brain = (zz / 0.75) ** 2 + (yy / 0.72) ** 2 + (xx / 0.58) ** 2 < 1
        paths = {}
        for i, modality in enumerate(MODALITIES):
            array = np.where(brain, rng.normal(500 + 50 * i, 80, brain.shape), 0).astype(np.float32)
            paths[modality] = out_dir / f"random_{modality}.nii.gz"
            sitk.WriteImage(sitk.GetImageFromArray(array), str(paths[modality]))
        return paths, f"random data in an ellipsoidal brain mask (synth failed: {type(error).__name__}: {error})"


def make_paper_bundle(out: Path, seed: int = 0) -> Path:
    """The ``paper`` architecture with random weights and random unit-vector scenario embeddings, as a bundle."""
    import torch

    from ..config import preset
    from ..constants import SCENARIOS
    from ..inference.bundle import write_bundle
    from ..nets.build import build_models

    torch.manual_seed(seed)
    cfg = preset("paper")
    embeddings = torch.nn.functional.normalize(torch.randn(len(SCENARIOS), EMBED_DIM), dim=-1)
    mae, segmenter = build_models(cfg, embeddings)
    identity = {"model_name": "random-unit-vectors", "pretrained": None, "untrained": True, "seed": seed}
    return write_bundle(out, cfg, {"mae": mae.state_dict(), "seg": segmenter.state_dict()}, embeddings, identity,
                        note="benchmark: random weights; not for any use")
