"""``predict``: segment one case (or a folder of cases) from any subset of the four sequences.

Output protocol (stdout, one line each, flushed): ``PROGRESS <fraction 0..1> <stage words>``, ``LOG <text>``
and, on success, a final ``DONE <seconds>``. On failure one line ``ERROR: <what happened; what to do>`` on
stderr and the exit code says which kind (``exit_codes``): 0 ok, 2 bad input (no sequence, unreadable file,
empty or NaN image, geometry), 3 bundle error, 4 out of memory, 5 device not available, 1 anything else.
Outputs are written under a temporary name and renamed, so a cancelled run leaves no half-written file; an
output path that cannot be written (its folder is a file, no permission, a read-only disk) is exit code 2.

Before any network runs the inputs are checked, co-registered and skull-stripped when needed
(``data.prepare_inputs``; ``--register`` and ``--skull-strip``: auto, always or never); each finding is a
``LOG`` line (warnings start with ``warning:``), and the seconds of each step join the ``timings`` line.
``--out-brain-mask`` writes the brain mask the networks were given; ``--save-transforms`` the rigid
transform of each co-registered sequence (``<modality>_to_<reference>.tfm``).

Batch mode (``--input-dir DIR --output-dir OUT``) predicts every case that ``data.discovery.find_cases``
finds, writing ``OUT/<case_id>/seg.nii.gz`` and ``OUT/<case_id>/recon/<modality>.nii.gz``; cases whose
``seg.nii.gz`` exists are skipped (so an interrupted batch resumes); a failing case is reported and the
others go on; the exit code is that of the first failure.
"""

from __future__ import annotations

import sys
import time

from ..exit_codes import run_command
from ..runtime import DEVICE_CHOICES, PRECISION_CHOICES

HELP = "segment one case (or a folder of cases) from any subset of the four sequences"

MODALITY_FLAGS = ("flair", "t1ce", "t1", "t2")
PREPARE_MODES = ("auto", "always", "never")  # data.prepare_inputs.MODES (not imported: --help stays light)


def add_arguments(parser) -> None:
    inputs = parser.add_argument_group("one case (any non-empty subset of the four sequences)")
    for name in MODALITY_FLAGS:
        inputs.add_argument(f"--{name}", metavar="FILE", help=f"{name.upper() if name != 't1ce' else 'T1ce'} volume (NIfTI or NRRD)")
    inputs.add_argument("--out-seg", metavar="FILE", help="label map to write (uint8 0,1,2,4 on the reference grid)")
    inputs.add_argument("--out-recon-dir", metavar="DIR", help="folder for the synthesized sequences (<modality>.nii.gz)")
    inputs.add_argument("--reference", choices=MODALITY_FLAGS,
                        help="sequence whose grid the outputs use (default: the first given, in flair,t1ce,t1,t2 order)")
    inputs.add_argument("--out-brain-mask", metavar="FILE",
                        help="the brain mask the model was given (uint8 0/1 on the reference grid)")
    inputs.add_argument("--save-transforms", metavar="DIR",
                        help="write the transform of each co-registered sequence (<modality>_to_<reference>.tfm)")
    prepare = parser.add_argument_group("scans that are not BraTS-ready (see the README)")
    prepare.add_argument("--skull-strip", default="auto", choices=PREPARE_MODES,
                         help="brain extraction (deepbet, the 'preprocess' extra): auto (default) when a sequence is "
                              "not skull-stripped, always, or never")
    prepare.add_argument("--register", default="auto", choices=PREPARE_MODES,
                         help="rigid co-registration onto the reference: auto (default) for sequences the check "
                              "finds misaligned, always, or never")
    batch = parser.add_argument_group("batch mode")
    batch.add_argument("--input-dir", metavar="DIR", help="folder of cases in a BraTS layout")
    batch.add_argument("--output-dir", metavar="DIR", help="writes <case>/seg.nii.gz and <case>/recon/<modality>.nii.gz")
    parser.add_argument("--bundle", required=True, metavar="PATH", help="model bundle (folder or .zip) made by `export`")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default: cuda when available")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: torch's choice)")
    parser.add_argument("--postprocess-et", action="store_true", help="BraTS post-processing: small ET volumes become NCR")
    parser.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                        help="auto (default): bfloat16 autocast where the CPU/GPU computes it natively and T1ce is "
                             "given, float32 otherwise; float32 or bfloat16 force it; the choice is logged (see "
                             "`benchmark` for speed and label agreement)")


def _say(line: str) -> None:
    print(line, flush=True)


class _Progress:
    """Prints ``PROGRESS`` lines for the part [start, stop] of the whole run."""

    def __init__(self):
        self.start, self.stop = 0.0, 1.0

    def span(self, start: float, stop: float) -> "_Progress":
        self.start, self.stop = start, stop
        return self

    def __call__(self, fraction: float, stage: str) -> None:
        value = self.start + (self.stop - self.start) * min(max(fraction, 0.0), 1.0)
        _say(f"PROGRESS {value:.3f} {stage}")


def _write_outputs(prediction, out_seg, recon_dir, out_brain_mask=None, transforms_dir=None) -> list[str]:
    from pathlib import Path

    from ..fileio import write_image_atomically

    written = []
    if out_seg:
        written.append(write_image_atomically(prediction.labels, Path(out_seg)))
    if recon_dir:
        for modality, image in prediction.reconstructions.items():
            written.append(write_image_atomically(image, Path(recon_dir) / f"{modality}.nii.gz"))
    if out_brain_mask:
        written.append(write_image_atomically(prediction.brain_mask, Path(out_brain_mask)))
    if transforms_dir:
        written += prediction.save_transforms(transforms_dir).values()
    return [str(path) for path in written]


def _single(args, predictor, progress: _Progress) -> None:
    from ..inference.errors import InputError

    images = {m: getattr(args, m) for m in MODALITY_FLAGS}
    if not (args.out_seg or args.out_recon_dir or args.out_brain_mask):
        raise InputError("nothing to write: pass --out-seg FILE, --out-recon-dir DIR and/or --out-brain-mask FILE")
    prediction = predictor.predict(images, reference=args.reference, postprocess=args.postprocess_et,
                                   progress=progress.span(0.05, 0.9), skull_strip=args.skull_strip,
                                   register=args.register, synthesize=bool(args.out_recon_dir))
    for line in prediction.log:
        _say(f"LOG {line}")
    progress.span(0.9, 1.0)(0.0, "writing outputs")
    for path in _write_outputs(prediction, args.out_seg, args.out_recon_dir, args.out_brain_mask,
                               args.save_transforms):
        _say(f"LOG wrote {path}")
    if args.save_transforms and not prediction.transforms:
        _say("LOG no sequence was co-registered: no transform to save")


def _batch(args, predictor, progress: _Progress) -> int:
    from pathlib import Path

    from ..data.discovery import find_cases
    from ..exit_codes import is_out_of_memory, one_line, report_error
    from ..inference.errors import InputError

    if not args.output_dir:
        raise InputError("--input-dir needs --output-dir DIR")
    try:
        cases = find_cases(args.input_dir)
    except (ValueError, OSError) as error:
        raise InputError(one_line(error)) from None
    if not cases:
        raise InputError(f"no cases found in {args.input_dir}; expected a BraTS-style folder of cases")
    first_failure = 0
    n = len(cases)
    for i, case in enumerate(cases):
        out = Path(args.output_dir) / case.case_id
        seg = out / "seg.nii.gz"
        span = progress.span(0.05 + 0.9 * i / n, 0.05 + 0.9 * (i + 1) / n)
        if seg.exists():
            span(1.0, f"{case.case_id}: exists, skipped")
            continue
        try:
            prediction = predictor.predict(dict(case.images), reference=args.reference, postprocess=args.postprocess_et,
                                           progress=lambda f, s, c=case.case_id: span(f, f"{c}: {s}"),
                                           skull_strip=args.skull_strip, register=args.register)
            _write_outputs(prediction, seg, out / "recon")
            for line in prediction.log:  # warnings on lines of their own, the rest on one line per case
                if line.startswith("warning: "):
                    _say(f"LOG warning: {case.case_id}: {line[len('warning: '):]}")
            _say(f"LOG {case.case_id}: {prediction.scenario.short}; " + "; ".join(prediction.log))
        except Exception as error:  # out of memory stops the batch: the next case would need as much
            if is_out_of_memory(error):
                raise
            first_failure = first_failure or report_error(error, prefix=f"{case.case_id}: ")
    return first_failure


def run(args) -> int:
    return run_command(lambda: _predict(args))


def _predict(args) -> int:
    from ..inference.errors import InputError
    from ..runtime import resolve_device, set_threads

    started = time.perf_counter()
    try:
        set_threads(args.threads)
        batch = bool(args.input_dir)
        if not batch and not any(getattr(args, m) for m in MODALITY_FLAGS):
            raise InputError("no sequence given: pass at least one of --flair, --t1ce, --t1, --t2 (or --input-dir)")
        if batch and any(getattr(args, m) for m in MODALITY_FLAGS):
            raise InputError("use either --input-dir or --flair/--t1ce/--t1/--t2, not both")
        if batch and (args.out_brain_mask or args.save_transforms):
            raise InputError("--out-brain-mask and --save-transforms are for one case; --input-dir writes the "
                             "segmentations only")
        device = resolve_device(args.device)
        progress = _Progress()
        progress(0.0, "loading model")
        from ..inference.predictor import Predictor

        predictor = Predictor.from_bundle(args.bundle, device, precision=args.precision)
        if predictor.meta.get("text_encoder", {}).get("untrained"):
            _say("LOG warning: this bundle's scenario prompts were embedded by an UNTRAINED text encoder")
        if predictor.meta.get("note"):
            _say(f"LOG note: {predictor.meta['note']}")
        code = _batch(args, predictor, progress) if batch else 0
        if not batch:
            _single(args, predictor, progress)
        if code:
            return code
        progress.span(0.0, 1.0)(1.0, "done")
        _say(f"DONE {time.perf_counter() - started:.2f}")
        return 0
    except KeyboardInterrupt:
        print("ERROR: cancelled; no partial output was written", file=sys.stderr, flush=True)
        return 130
