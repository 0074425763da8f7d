"""``synth``: write synthetic BraTS-2020-layout cases built on the MNI152 anatomy."""

from ..exit_codes import run_command

HELP = "write synthetic BraTS-2020-layout cases built on the MNI152 anatomy"


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="folder that receives one sub-folder per case")
    parser.add_argument("--n", type=int, default=10, help="number of cases (default 10)")
    parser.add_argument("--spacing", type=int, choices=(1, 2), default=2,
                        help="voxel size in mm: 1 (240x240x155, like BraTS) or 2 (120x120x78; default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; case k depends only on (seed, k)")
    parser.add_argument("--start-index", type=int, default=1, help="number of the first case (default 1)")
    parser.add_argument("--montage", metavar="PNG", default=None,
                        help="also draw the first cases (four sequences and labels) into this PNG")
    parser.add_argument("--montage-cases", type=int, default=4, help="cases in the montage (default 4)")
    parser.add_argument("--head", action="store_true",
                        help="put a head around each brain (CSF, skull, scalp, eyes, neck, noisy air): inputs that are "
                             "NOT skull-stripped, on a grid taller by 46 mm")
    parser.add_argument("--misalign", metavar="DEG,MM", type=_motion, default=None,
                        help="move every sequence but FLAIR by a random rigid motion of exactly DEG degrees and MM mm; "
                             "the truth goes to <case>/<case>_motion.json")


def _motion(text: str) -> tuple[float, float]:
    import argparse

    try:
        degrees, mm = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DEG,MM such as 5,5, not {text!r}") from None
    if degrees < 0 or mm < 0:
        raise argparse.ArgumentTypeError(f"degrees and millimetres must not be negative: {text!r}")
    return degrees, mm


def run(args) -> int:
    return run_command(lambda: _synth(args))


def _synth(args) -> int:
    import time

    from ..exit_codes import UsageError
    from ..synth import montage, synthesize

    if args.n < 1:
        raise UsageError("--n must be at least 1")
    start = time.perf_counter()

    def report(done, total, case_dir):
        print(f"PROGRESS {done / total:.3f} wrote {case_dir}", flush=True)

    folders = synthesize(args.out, args.n, spacing=args.spacing, seed=args.seed, start_index=args.start_index,
                         progress=report, head=args.head, misalign=args.misalign)
    if args.montage:
        path = montage(folders[: max(args.montage_cases, 1)], args.montage)
        print(f"montage: {path}")
    print(f"DONE {time.perf_counter() - start:.1f} s: {len(folders)} cases in {args.out}")
    return 0
