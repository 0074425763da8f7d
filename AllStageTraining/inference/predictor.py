"""The Predictor: any non-empty subset of the four sequences in, a label map and the synthesized sequences out.

Steps of ``Predictor.predict`` (one case):

1. read the given sequences (paths or SimpleITK images) and prepare them (``data.prepare_inputs``): check
   each one (values, geometry, skull-stripped or not, aligned with the reference or not), co-register the
   misaligned ones onto the reference (the first available in MODALITIES order, or the one named), resample
   every other grid onto the reference's, and find the brain (the non-zero voxels of skull-stripped inputs,
   else deepbet); each finding is a log line. A BraTS-ready case (stripped, aligned, one grid) is untouched;
2. ``data.preprocess.load_case``: orient to LPS, crop to the brain box, z-score per sequence;
3. zero-pad the crop at the end of each axis to a multiple of ``2**(levels-1)``;
4. when a sequence is missing, the MAE completes it (``MultimodalMAE.complete``; its learned fill is sampled
   over the crop's normalized box, [-1, 1] per axis spanning the crop); no MAE pass when all four are present.
   Where the method's MAE only synthesizes for display (``Method.completes_inputs`` False, the default
   ``ours-display-mae``), the completions are returned but the segmenter gets the missing channels as zero;
5. the segmenter runs with the scenario index of the present set; WT/TC/ET are thresholded
   (``cfg.inference.threshold``) and turned into BraTS labels (``data.labels.labels_from_regions``); labels
   outside the brain mask are 0; optional BraTS ET post-processing;
6. labels (uint8), reconstructions (float32) and the brain mask used (uint8) are mapped back onto the
   reference input's grid. When the brain mask came from brain extraction and the tumour lies along its
   edge, the log warns that the extraction may have cut the tumour off.

Networks run once over the whole padded brain crop when ``cfg.inference.window`` is None, else with MONAI's
``sliding_window_inference`` (window: the given size, or the training crop for "crop"; clamped to the crop;
``cfg.inference.overlap``, Gaussian blending; each window gets its own MAE box; a float32 pass on the CPU
over small windows takes several per call, ``CPU_FLOAT32_WINDOWS_PER_CALL``, which puts its 3x3x3
convolutions on oneDNN).
Everything runs under ``torch.inference_mode``; the networks compute under bfloat16 autocast where the device
runs it natively and T1ce is given (``precision="auto"``, ``runtime.resolve_precision``, ``BFLOAT16_NEEDS``) or
in float32; thresholds and the display scaling are applied in float32. Big tensors are freed as soon as used.

Synthesized sequences are z-scores inside the brain; for display they are written as
``RECON_SCALE * z + RECON_OFFSET`` inside the brain (z in [-5, 5] -> [0, 1000], brain mean 500) and 0
outside it, a range that viewers' automatic window/level handles like an ordinary MR volume.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import SimpleITK as sitk
import torch

from ..config import RunConfig
from ..constants import MODALITIES, MODALITY_DISPLAY, Scenario, scenario_from_mask
from ..methods import get_method
from ..nets.unet import use_channels_last
from ..runtime import autocast, resolve_device, resolve_precision
from .errors import InputError

#: progress(fraction in [0, 1], stage words)
ProgressFn = Callable[[float, str], None]
#: Synthesized sequences for display: RECON_SCALE * z-score + RECON_OFFSET inside the brain, 0 outside.
RECON_SCALE = 100.0
RECON_OFFSET = 500.0
#: A brain extraction that removed part of a tumour leaves a bite in the mask, against which the predicted
#: tumour stops. Bites are the concavities a closing with a ball of CUT_CLOSING_MM fills; the warning needs
#: more than CUT_MIN_SHARE of the tumour's surface against them and more than CUT_MIN_ML of them within
#: CUT_NEAR_MM of it. Synthetic heads (2 mm, cases 1-10, FLAIR+T1, all four, T1ce; the 350+350-step demo
#: model shipped until 2026-12-05): deepbet's masks never warned (at most 13% or 1.9 ml, never both over);
#: masks bitten by the outer 15% of the tumour warned in 28 of 30 runs (10-32% and 2.9-12.6 ml).
CUT_CLOSING_MM = 8.0
CUT_NEAR_MM = 4.0
CUT_MIN_SHARE = 0.08
CUT_MIN_ML = 2.5
#: Windows per network call of a float32 pass on the CPU over windows of at most CPU_BATCHED_WINDOW_VOXELS. With
#: one sample PyTorch's CPU float32 3-D convolution takes its native im2col path instead of oneDNN whenever the
#: input is small (batch 1, 3x3x3 kernels, channels x depth x height at most 20480: nearly every convolution of
#: the width-8 U-Net on the 48^3 windows of ``--crop 48``); with two samples or more it takes oneDNN. Here an
#: 8-channel 32^3 convolution took 14.5 ms alone against 1.9 ms per sample in a batch of 2-8 (2 threads). Larger
#: windows keep one per call: their convolutions run oneDNN already, and four would take four times the
#: activations' memory. bfloat16 (on a CPU that runs it natively, as "auto" requires) runs oneDNN either way, and
#: one window per call keeps the hyper-network's modulation folded into GroupNorm's float32 affine parameters
#: (``nets.unet.GroupNorm3d``), so only float32 batches.
CPU_FLOAT32_WINDOWS_PER_CALL = 4
CPU_BATCHED_WINDOW_VOXELS = 64**3
#: Under ``precision="auto"`` bfloat16 runs only for sets that include this sequence; without it, the networks
#: run in float32. Enhancing tumour is what T1ce shows; without it the model's ET is a small, low-confidence
#: region guessed from the other sequences, and bfloat16's rounding moves its edge. On the shipped bundle's
#: trained weights (``ours-display-mae``, 1 mm case, all 15 sets; docs/science/shipped_bundle) bfloat16 labels
#: agreed with float32 at ET Dice 0.988 (T2 alone), 0.988 (FLAIR), 0.990 (FLAIR + T2), 0.991 (T1 + T2), and
#: at >= 0.994 for WT, TC and ET in every set with T1ce. The ``ours`` bundles before it: worst ET without T1ce
#: 0.982 (2400 steps, T1 alone) and 0.975 (350 steps, T2 alone; either network alone in float32 gave 0.986).
BFLOAT16_NEEDS = "t1ce"


def scenario_precision(choice: str, resolved: str, scenario: Scenario) -> str:
    """The precision for the set ``scenario`` given the precision asked for (``choice``) and what it resolved to
    on the device (``runtime.resolve_precision``): float32 under "auto" when the set lacks ``BFLOAT16_NEEDS``,
    else ``resolved``."""
    return "float32" if choice == "auto" and BFLOAT16_NEEDS not in scenario.modalities else resolved


@dataclass
class Prediction:
    """One case's result, on the reference input's grid.

    labels: uint8 label map with values {0, 1, 2, 4}. reconstructions: modality -> float32 image, one per
    sequence that was missing (display scale, see the module docstring). scenario: the present set.
    log: human-readable lines (the input findings, crop, timings). timings: seconds per stage (the
    preparation's "checks", "registration" and "skull_strip" included).
    padded_shape: the (Z, Y, X) size of the padded brain crop the networks saw.
    brain_mask: uint8 image (1 = brain), the mask the networks were given. mask_source: where it came from.
    findings: ``data.input_checks.Finding`` of the preparation. transforms: modality -> the rigid transform
    (reference point -> that sequence's point) of each co-registered sequence. reference: the sequence
    whose grid the outputs use.
    """

    labels: sitk.Image
    reconstructions: dict[str, sitk.Image]
    scenario: Scenario
    log: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    padded_shape: tuple[int, int, int] | None = None
    brain_mask: sitk.Image | None = None
    mask_source: str = "non-zero voxels"
    findings: list = field(default_factory=list)
    transforms: dict[str, sitk.Transform] = field(default_factory=dict)
    reference: str | None = None

    def save_transforms(self, folder: str | Path) -> dict[str, Path]:
        """Write each co-registration transform to ``folder/<modality>_to_<reference>.tfm`` (ITK format)."""
        from ..data.registration import save_transform

        return {m: save_transform(t, Path(folder) / f"{m}_to_{self.reference}.tfm")
                for m, t in self.transforms.items()}


def _read_inputs(images: Mapping[str, object]) -> dict[str, sitk.Image]:
    """modality -> sitk.Image for the non-None entries; InputError for unknown names, missing, unreadable or
    unsuitable files (a folder, not a 3D scalar volume)."""
    from ..data.preprocess import ImageError, read_image

    unknown = sorted(set(images) - set(MODALITIES))
    if unknown:
        raise InputError(f"unknown sequence name(s) {unknown}; expected some of {', '.join(MODALITIES)}")
    read: dict[str, sitk.Image] = {}
    for modality in MODALITIES:
        if images.get(modality) is None:
            continue
        try:
            read[modality] = read_image(images[modality], "input", MODALITY_DISPLAY[modality])
        except ImageError as error:
            message = str(error).replace("case input: ", "")
            if message.startswith("cannot read"):
                message += "; use a NIfTI (.nii/.nii.gz) or NRRD volume"
            raise InputError(message) from None
    if not read:
        raise InputError("no sequence given: pass at least one of FLAIR, T1ce, T1, T2 (--flair/--t1ce/--t1/--t2)")
    return read


def _prepare(read: dict[str, sitk.Image], reference: str | None, skull_strip: str, register: str, device: str,
             progress: ProgressFn):
    """``data.prepare_inputs`` on the read sequences; its failures (an unusable input, deepbet missing) become
    InputError, exit code 2."""
    from ..data.prepare_inputs import PreparationError, prepare_inputs
    from ..data.skull_strip import BrainExtractionUnavailable

    if reference is not None and reference not in read:
        raise InputError(f"reference sequence {reference!r} was not given; choose one of {', '.join(read)}")
    try:
        return prepare_inputs(read, reference=reference, skull_strip=skull_strip, register=register, device=device,
                              progress=progress)
    except (PreparationError, BrainExtractionUnavailable) as error:
        raise InputError(str(error)) from None


class _Laps:
    """Seconds per stage: ``lap(name)`` records the time since the previous lap (or creation)."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 4)
        self._clock = now

    def add(self, timings: Mapping[str, float]) -> None:
        """Take stages timed elsewhere (seconds); the next lap counts from now."""
        self.timings.update(timings)
        self._clock = time.perf_counter()


def _mask_bite(tumour: np.ndarray, brain: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float]:
    """(share of the tumour's surface voxels against a concavity of the brain mask, volume in ml of the
    concavities within CUT_NEAR_MM of the tumour); bool (Z, Y, X) arrays, ``spacing`` in mm along (z, y, x)."""
    from scipy import ndimage as ndi

    pad = int(math.ceil(CUT_CLOSING_MM / min(spacing))) + 1
    padded = np.pad(brain, pad)
    grown = ndi.distance_transform_edt(~padded, sampling=spacing) <= CUT_CLOSING_MM
    closed = ndi.distance_transform_edt(grown, sampling=spacing) > CUT_CLOSING_MM
    concave = closed[pad:-pad, pad:-pad, pad:-pad] & ~brain
    surface = tumour & ~ndi.binary_erosion(tumour)
    share = float((surface & ndi.binary_dilation(concave)).sum()) / max(int(surface.sum()), 1)
    near = concave & (ndi.distance_transform_edt(~tumour, sampling=spacing) <= CUT_NEAR_MM)
    return share, float(near.sum()) * float(np.prod(spacing)) / 1000.0


def _cut_tumour_warnings(labels: np.ndarray, case, prepared) -> list[str]:
    """One warning line when the predicted tumour stops against a bite in a brain mask that the preparation
    made (by extraction, or from some of the sequences; see CUT_*), else none."""
    tumour = labels > 0
    if prepared.brain_mask is None or not tumour.any():
        return []
    share, bite_ml = _mask_bite(tumour, case.brain, tuple(reversed(case.grid.spacing)))
    if share <= CUT_MIN_SHARE or bite_ml <= CUT_MIN_ML:
        return []
    return [f"warning: the tumour stops against a dent in the brain mask ({prepared.mask_source}; "
            f"{100 * share:.0f}% of its surface, {bite_ml:.1f} ml of dent): brain extraction may have cut part of "
            f"it off; look at the brain mask (predict --out-brain-mask; in Slicer the brain mask volume) and, if "
            f"it cuts the tumour, pass skull-stripped sequences"]


def _logit(probability: float) -> float:
    """The logit threshold equivalent to ``sigmoid(x) > probability`` (so no sigmoid pass is needed)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {probability}")
    return math.log(probability / (1.0 - probability))


class Predictor:
    """Runs the MAE completion and the personalized segmenter on one case at a time.

    Args:
        cfg: the run's configuration (network shapes, inference window/overlap/threshold/post-processing).
        mae: the stage-1 ``MultimodalMAE`` or None (``zero-fill``: absent channels stay 0). It completes the
            segmenter's inputs, or only synthesizes for display, as ``cfg.method`` says (``completes_inputs``).
        segmenter: the stage-2 ``PersonalizedSegmenter``.
        device: "auto", "cpu", "cuda" or a torch.device.
        meta: free-form description of where the networks came from (``bundle.json`` for bundles).
        precision: "auto" (default: bfloat16 autocast on CPUs and GPUs that compute it natively, for the sets of
            sequences that include T1ce (``BFLOAT16_NEEDS``), else float32), "float32" or "bfloat16" (every
            set; see ``benchmark`` for speed and the agreement of the labels).
        channels_last: run the U-Nets in ``torch.channels_last_3d`` memory format (same results to float32
            rounding; about 1.6x faster 3D convolutions on CPU here). Default: on CPU only.
    """

    def __init__(self, cfg: RunConfig, mae, segmenter, device: str | torch.device = "auto", meta: dict | None = None,
                 *, precision: str = "auto", channels_last: bool | None = None):
        self.cfg = cfg
        self.device = resolve_device(device)
        #: What the device runs natively for "auto", or the precision asked for; ``precision_for`` applies
        #: ``BFLOAT16_NEEDS`` to it under "auto".
        self.precision = resolve_precision(precision, self.device)
        self.precision_choice = precision
        self.mae = None if mae is None else mae.to(self.device).eval()
        #: Whether the MAE's completions feed the segmenter (else it only synthesizes sequences for display).
        self.completes_inputs = mae is not None and get_method(cfg.method).completes_inputs
        self.segmenter = segmenter.to(self.device).eval()
        self.channels_last = self.device.type == "cpu" if channels_last is None else bool(channels_last)
        if self.channels_last:
            for model in (self.mae, self.segmenter):
                if model is not None:
                    use_channels_last(model)
        #: Sliding windows per network call of a float32 pass on the CPU over small windows (1: one at a time).
        self.cpu_float32_windows = CPU_FLOAT32_WINDOWS_PER_CALL
        self.meta = dict(meta or {})
        self.divisor = cfg.net.size_divisor

    # ---------------------------------------------------------------------------------------- building
    @classmethod
    def from_bundle(cls, path: str | Path, device: str | torch.device = "auto", **kwargs) -> "Predictor":
        """A predictor from a bundle folder or zip (every check of ``bundle.load_bundle_models`` passed)."""
        from .bundle import load_bundle_models

        cfg, mae, segmenter, meta = load_bundle_models(path)
        meta = {**meta, "source": str(path)}
        return cls(cfg, mae, segmenter, device, meta, **kwargs)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device = "auto", **kwargs) -> "Predictor":
        """A predictor from a run folder (``layout.RunFolder``: config.json, mae/, seg/)."""
        from .run_reader import read_run
        from .weights import build_checked_models

        cfg, states, embeddings, identity = read_run(run_dir)
        mae, segmenter = build_checked_models(cfg, states, embeddings, source=str(run_dir))
        return cls(cfg, mae, segmenter, device, {"source": str(run_dir), "text_encoder": identity}, **kwargs)

    # ---------------------------------------------------------------------------------------- running
    def precision_for(self, scenario: Scenario) -> str:
        """The precision the networks run in for the set ``scenario`` (``scenario_precision``)."""
        return scenario_precision(self.precision_choice, self.precision, scenario)

    def precision_policy(self) -> str:
        """``precision_for`` in words: "float32", "bfloat16" or "bfloat16 with T1ce, float32 without"."""
        if self.precision_choice == "auto" and self.precision != "float32":
            return f"{self.precision} with T1ce, float32 without"
        return self.precision

    def autocast(self, scenario: Scenario):
        """The autocast context the networks run under for ``scenario`` (bfloat16 autocast, or disabled for
        float32; ``precision_for``)."""
        return autocast(self.device, self.precision_for(scenario))

    def run_network(self, fn, x: torch.Tensor, crop_shape: tuple[int, ...], scenario: Scenario) -> torch.Tensor:
        """``fn(windows (B, C, d, h, w), boxes (B, 3, 2)) -> (B, C', d, h, w)`` over the padded crop ``x``
        (1, C, D, H, W), under the autocast of ``scenario``: in one pass (B = 1; ``cfg.inference_window()`` None)
        or by MONAI's sliding window, B windows per call (``windows_per_call``). Returns float32."""
        from ..data.dataset import normalized_box

        padded = tuple(x.shape[2:])
        roi = self.window_for(padded)
        if roi is None:
            box = torch.from_numpy(normalized_box((0, 0, 0), padded, crop_shape))[None].to(self.device)
            with self.autocast(scenario):
                return fn(x, box).float()
        from monai.inferers import sliding_window_inference

        def windowed(patch: torch.Tensor, slices) -> torch.Tensor:
            boxes = np.stack([normalized_box([s.start for s in location[2:]], patch.shape[2:], crop_shape)
                              for location in slices])
            with self.autocast(scenario):
                return fn(patch, torch.from_numpy(boxes).to(self.device)).float()

        return sliding_window_inference(x, roi, self.windows_per_call(scenario, roi), windowed,
                                         overlap=self.cfg.inference.overlap, mode="gaussian", with_coord=True)

    def window_for(self, padded: tuple[int, ...]) -> tuple[int, ...] | None:
        """The sliding window over a padded crop of shape ``padded`` (``cfg.inference_window()`` clamped to it), or
        None for one pass (no window, or one at least as large as the crop)."""
        window = self.cfg.inference_window()
        if window is None or all(w >= p for w, p in zip(window, padded)):
            return None
        return tuple(min(int(w), p) for w, p in zip(window, padded))

    def windows_per_call(self, scenario: Scenario, window: tuple[int, ...]) -> int:
        """Sliding windows of size ``window`` per network call: ``cpu_float32_windows`` (at least 1) for a float32
        pass on the CPU over windows of at most ``CPU_BATCHED_WINDOW_VOXELS``, else 1."""
        small = math.prod(window) <= CPU_BATCHED_WINDOW_VOXELS
        cpu_float32 = self.device.type == "cpu" and self.precision_for(scenario) == "float32"
        return max(1, int(self.cpu_float32_windows)) if small and cpu_float32 else 1

    def _run_line(self, scenario: Scenario, crop_shape: tuple[int, ...], padded: tuple[int, ...]) -> str:
        """The log line that says the set, the crop and how the networks run (device, precision, layout, windows)."""
        precision = self.precision_for(scenario)
        window = self.window_for(padded)
        windows = (f"; sliding windows {'x'.join(map(str, window))}, overlap {self.cfg.inference.overlap:g}, "
                   f"{self.windows_per_call(scenario, window)} per call" if window else "; one pass")
        return (f"scenario {scenario.short} ({scenario.display}); brain crop {'x'.join(map(str, crop_shape))} voxels, "
                f"padded to {'x'.join(map(str, padded))}; device {self.device}, {precision}"
                f"{' (bfloat16 only with T1ce)' if precision != self.precision else ''}"
                f"{', channels-last' if self.channels_last else ''}{windows}")

    def _padded_input(self, case) -> torch.Tensor:
        """The case's cropped image as a (1, 4, *padded) tensor on the device, zero-padded at the end of each
        axis to a multiple of the size divisor; the case gives up its own copy."""
        crop_shape = case.brain.shape
        padded = tuple(-(-s // self.divisor) * self.divisor for s in crop_shape)
        x = torch.zeros((1, len(MODALITIES), *padded), dtype=torch.float32, device=self.device)
        x[0, :, : crop_shape[0], : crop_shape[1], : crop_shape[2]] = torch.from_numpy(case.image)
        case.image = None  # the tensor holds the only copy from here on
        return x

    def _padded_brain(self, case, padded: tuple[int, ...]) -> torch.Tensor:
        """The case's brain mask as a (1, 1, *padded) bool tensor on the device (False in the padding)."""
        brain = torch.zeros((1, 1, *padded), dtype=torch.bool, device=self.device)
        z, y, x = case.brain.shape
        brain[0, 0, :z, :y, :x] = torch.from_numpy(case.brain)
        return brain

    def _synthesized(self, x: torch.Tensor, case, scenario: Scenario, crop) -> dict[str, np.ndarray]:
        """The completed channels of the missing sequences, on the crop, in display scale (see the module
        docstring), 0 outside the brain."""
        brain = torch.from_numpy(case.brain).to(self.device)
        out = {}
        for channel, modality in enumerate(MODALITIES):
            if modality in scenario.missing:
                values = x[crop][channel].mul(RECON_SCALE).add_(RECON_OFFSET)
                out[modality] = values.mul_(brain).cpu().numpy()
        return out

    def _runs_mae(self, synthesize: bool) -> bool:
        """Whether a case with missing sequences needs the MAE pass: for the labels, or for the synthesized
        sequences asked for."""
        return self.mae is not None and (synthesize or self.completes_inputs)

    def _complete(self, x: torch.Tensor, case, scenario: Scenario, crop, synthesize: bool, log: list[str],
                  report: ProgressFn) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """The segmenter's input (``x`` completed by the MAE, or ``x`` itself where the MAE is for display only or
        absent) and the synthesized sequences asked for (``_synthesized``; none without an MAE or when
        ``synthesize`` is False). ``x``: the padded (1, 4, Z, Y, X) input with the missing channels zero."""
        names = ", ".join(MODALITY_DISPLAY[m] for m in scenario.missing)
        if not self._runs_mae(synthesize):
            log.append(f"missing sequences are zero-filled ({self.cfg.method}"
                       + (": no MAE in this model)" if self.mae is None else "; synthesis not asked for)"))
            return x, {}
        report(0.3, "reconstructing " + names)
        available = torch.tensor([scenario.mask], dtype=torch.bool, device=self.device)
        visible = available[:, :, None, None, None]
        recon = self.run_network(lambda v, box: self.mae(v, visible, box), x, case.brain.shape, scenario)
        completed = self.mae.merge(x, recon, available, self._padded_brain(case, x.shape[2:]))
        del recon
        synthesized = self._synthesized(completed, case, scenario, crop) if synthesize else {}
        if self.completes_inputs:
            log.append(f"reconstructed {names} with the MAE")
            return completed, synthesized
        log.append(f"reconstructed {names} with the MAE for display; the segmenter ({self.cfg.method}) sees them "
                   "as zero, as it was trained")
        return x, synthesized

    def _postprocess(self, labels: np.ndarray, case, log: list[str]) -> np.ndarray:
        from ..evaluation.metrics import postprocess_et

        before = int(np.count_nonzero(labels == 4))
        labels = postprocess_et(labels, tuple(reversed(case.grid.spacing)))
        after = int(np.count_nonzero(labels == 4))
        log.append("ET post-processing: " + ("no change" if before == after else
                                             f"{before} ET voxels below the minimum volume relabelled NCR"))
        return labels

    @torch.inference_mode()
    def predict(self, images: Mapping[str, object], *, reference: str | None = None, postprocess: bool | None = None,
                progress: ProgressFn | None = None, skull_strip: str = "auto", register: str = "auto",
                synthesize: bool = True) -> Prediction:
        """Segment one case from the given sequences.

        images: modality -> file path, SimpleITK image or None (missing); at least one must be given.
        reference: the sequence whose grid the outputs use (default: the first available in MODALITIES order).
        postprocess: BraTS ET post-processing (default: ``cfg.inference.postprocess_et``).
        progress: called with (fraction, stage words), reaching 1.0 at the end.
        skull_strip, register: "auto" (when the checks find it needed), "always" or "never"
        (``data.prepare_inputs``); brain extraction runs on this predictor's device.
        synthesize: return the MAE's synthesized sequences. False skips the MAE pass where the labels do not
        need it (a display-only MAE, ``Method.completes_inputs``); the labels are the same either way.
        Raises InputError for unusable inputs (none given, unreadable, empty, all NaN, bad reference, a brain
        mask that cannot be a brain, brain extraction needed but deepbet not installed).
        """
        from ..data.labels import labels_from_regions
        from ..data.preprocess import load_case, to_reference_image

        report = progress or (lambda fraction, stage: None)
        laps = _Laps()
        report(0.0, "reading images")
        read = _read_inputs(images)
        scenario = scenario_from_mask(tuple(m in read for m in MODALITIES))
        laps.lap("read")
        prepared = _prepare(read, reference, skull_strip, register, str(self.device),
                            lambda fraction, stage: report(0.02 + 0.23 * fraction, stage))
        del read
        log = [finding.line() for finding in prepared.findings]  # its timings join the others at the end
        laps.add(prepared.timings)

        report(0.25, "preprocessing")
        try:
            case = load_case(prepared.images, case_id="input", reference=prepared.reference,
                             brain_mask=prepared.brain_mask)
        except ValueError as error:  # ImageError, GeometryError from the data layer
            raise InputError(str(error).replace("case input: ", "")) from None
        prepared.images.clear()
        crop_shape = case.brain.shape
        x = self._padded_input(case)
        log.append(self._run_line(scenario, crop_shape, tuple(x.shape[2:])))
        laps.lap("preprocess")

        crop = (0, slice(None), slice(0, crop_shape[0]), slice(0, crop_shape[1]), slice(0, crop_shape[2]))
        synthesized: dict[str, np.ndarray] = {}
        if scenario.missing:
            x, synthesized = self._complete(x, case, scenario, crop, synthesize, log, report)
            if self._runs_mae(synthesize):
                laps.lap("reconstruct")
        report(0.55, "segmenting")
        padded = tuple(x.shape[2:])
        index = torch.tensor([scenario.index], device=self.device)
        segment = lambda v, box: self.segmenter(v, index.expand(len(v)), deep=False)["logits"]  # noqa: E731
        logits = self.run_network(segment, x, crop_shape, scenario)
        del x
        labels = labels_from_regions(logits[crop], _logit(self.cfg.inference.threshold)).cpu().numpy()
        del logits
        labels[~case.brain] = 0
        log += _cut_tumour_warnings(labels, case, prepared)
        laps.lap("segment")

        report(0.9, "mapping results back")
        if postprocess if postprocess is not None else self.cfg.inference.postprocess_et:
            labels = self._postprocess(labels, case, log)
        label_image = to_reference_image(labels, case, is_label=True)
        recon_images = {m: to_reference_image(v, case, is_label=False) for m, v in synthesized.items()}
        brain_image = to_reference_image(case.brain, case, is_label=True)
        laps.lap("map back")
        log.append("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in laps.timings.items()))
        report(1.0, "done")
        return Prediction(label_image, recon_images, scenario, log, laps.timings, padded, brain_image,
                          prepared.mask_source, prepared.findings, prepared.transforms, prepared.reference)
