"""The timed inference runs, each in its own process: our Predictor and MONAI's BraTS-tutorial SegResNet, from
the NIfTI files to written outputs; and the FLOPs of their networks.

Times: ``io_s`` = reading the inputs through writing the outputs (the model already built); ``model_s`` = the
networks alone. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over the networks on meta
tensors of the exact input shapes (multiply-add = 2 FLOPs).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..runtime import set_threads
from .inputs import EMBED_DIM
from .processes import gpu_peak_mb, peak_rss_mb, sync

SEGRESNET_KWARGS = dict(blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), init_filters=16, in_channels=4, out_channels=3)
SEGRESNET_ROI = (240, 240, 160)
SEGRESNET_OVERLAP = 0.5


def count_flops_ours(cfg, padded_shape, with_mae: bool) -> int:
    """FLOPs of one pass of (MAE when ``with_mae``) + segmenter over a (1, 4, *padded_shape) input."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..nets.build import build_models

    with torch.device("meta"):
        mae, segmenter = build_models(cfg, torch.zeros(15, EMBED_DIM))
        x = torch.zeros(1, 4, *padded_shape)
        box = torch.zeros(1, 3, 2)
        available = torch.ones(1, 4, dtype=torch.bool)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            if with_mae:
                x = mae.complete(x, available, box, torch.ones(1, 1, *padded_shape))
            segmenter(x, torch.zeros(1, dtype=torch.long), deep=False)  # as the Predictor runs it
    return int(counter.get_total_flops())


def _segresnet():
    from monai.networks.nets import SegResNet

    return SegResNet(**{k: list(v) if isinstance(v, tuple) else v for k, v in SEGRESNET_KWARGS.items()})


def count_flops_segresnet(window) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = _segresnet()
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.zeros(1, 4, *window))
    return int(counter.get_total_flops())


def child_ours(spec: dict) -> dict:
    """One prediction with our Predictor, from files to written files, in this (fresh) process.

    spec: bundle, device, threads, precision ("auto" | "float32" | "bfloat16"), channels_last (None: the
    Predictor's default), window (None: one pass; "bundle": the bundle's own window and overlap), overlap, images
    ({modality: path or None}), out (folder), synthesize (optional, default True: write the synthesized
    sequences, as ``predict --out-recon-dir`` and the Slicer module do; False: the labels alone, which skips the
    MAE pass of a display-only MAE), cpu_float32_windows (optional: ``Predictor.cpu_float32_windows``)."""
    set_threads(spec["threads"])
    from ..fileio import write_image_atomically
    from ..inference.predictor import Predictor

    start = time.perf_counter()
    predictor = Predictor.from_bundle(spec["bundle"], spec["device"], precision=spec["precision"],
                                      channels_last=spec.get("channels_last"))
    if spec["window"] != "bundle":
        predictor.cfg.inference.window = tuple(spec["window"]) if spec["window"] else None
        predictor.cfg.inference.overlap = spec["overlap"]
    predictor.cpu_float32_windows = spec.get("cpu_float32_windows", predictor.cpu_float32_windows)
    load_s = time.perf_counter() - start
    out = Path(spec["out"])
    start = time.perf_counter()
    prediction = predictor.predict(spec["images"], synthesize=spec.get("synthesize", True))
    write_image_atomically(prediction.labels, out / "seg.nii.gz")
    for modality, image in prediction.reconstructions.items():
        write_image_atomically(image, out / f"recon_{modality}.nii.gz")
    sync(spec["device"])
    io_s = time.perf_counter() - start
    model_s = prediction.timings.get("reconstruct", 0.0) + prediction.timings["segment"]
    shape, flops = prediction.padded_shape, None
    window = predictor.window_for(tuple(shape))
    if window is None:
        flops = count_flops_ours(predictor.cfg, shape, "reconstruct" in prediction.timings)
    precision = predictor.precision_for(prediction.scenario)
    windowing = {"window": list(window) if window else None, "overlap": predictor.cfg.inference.overlap,
                 "windows_per_call": predictor.windows_per_call(prediction.scenario, window) if window else None}
    del prediction, predictor
    return {"load_s": load_s, "io_s": io_s, "model_s": model_s, "peak_rss_mb": peak_rss_mb(),
            "gpu_peak_mb": gpu_peak_mb(spec["device"]), "flops": flops, "precision": precision,
            "labels": str(out / "seg.nii.gz"), "padded_shape": list(shape), **windowing}


def child_segresnet(spec: dict) -> dict:
    """MONAI's BraTS-tutorial SegResNet with sliding-window inference, from files to a written label map
    (float32 on the CPU, float16 autocast on a GPU, as the tutorial runs it)."""
    set_threads(spec["threads"])
    import numpy as np
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import NormalizeIntensity

    from ..constants import MODALITIES
    from ..data.labels import labels_from_regions
    from ..fileio import write_image_atomically

    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = _segresnet().to(device).eval()
    start = time.perf_counter()
    images = [sitk.ReadImage(str(spec["images"][m])) for m in MODALITIES]
    # nibabel-style (x, y, z) axes, as the tutorial's LoadImaged gives: 240x240x155 -> roi 240x240x160.
    volume = np.stack([sitk.GetArrayViewFromImage(im).astype(np.float32).transpose(2, 1, 0) for im in images])
    volume = NormalizeIntensity(nonzero=True, channel_wise=True)(volume)
    inputs = torch.as_tensor(np.asarray(volume), dtype=torch.float32)[None].to(device)
    del volume
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if cuda else torch.autocast("cpu", enabled=False)
    model_start = time.perf_counter()
    with torch.inference_mode(), autocast:
        logits = sliding_window_inference(inputs, SEGRESNET_ROI, 1, model, overlap=SEGRESNET_OVERLAP)
    sync(spec["device"])
    model_s = time.perf_counter() - model_start
    del inputs
    labels = labels_from_regions(logits[0].float(), 0.0).cpu().numpy().transpose(2, 1, 0)
    del logits
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels))
    image.CopyInformation(images[0])
    write_image_atomically(image, Path(spec["out"]) / "seg.nii.gz")
    io_s = time.perf_counter() - start
    return {"io_s": io_s, "model_s": model_s, "peak_rss_mb": peak_rss_mb(), "gpu_peak_mb": gpu_peak_mb(spec["device"]),
            "flops": count_flops_segresnet(SEGRESNET_ROI), "precision": "float16" if cuda else "float32"}
