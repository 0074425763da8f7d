"""``prepare``: discover cases and write a split file (train/val/test, training-time missing sequences)."""

from ..exit_codes import run_command

HELP = "discover cases and write a split file (train/val/test, training-time missing sequences)"


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR", help="folder of BraTS cases (2018, 2019-2021 or 2023+ layout)")
    parser.add_argument("--out", required=True, metavar="JSON", help="split file to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the split and simulated missing data (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share of labelled cases for validation (default 0.15)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of labelled cases for testing, drawn among complete cases (default 0.2)")
    missing = parser.add_mutually_exclusive_group()
    missing.add_argument("--missing-ratio", type=float, metavar="R",
                         help="simulate missing sequences: this fraction of training cases loses a random non-empty "
                              "proper subset of its sequences (uniform over the subsets)")
    missing.add_argument("--missing-rates", metavar="F,C,1,2",
                         help="simulate missing sequences: per-sequence drop rates for flair,t1ce,t1,t2, "
                              "e.g. 0.2,0.4,0.6,0.8 (at least one sequence is always kept)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="warn about unusable cases and leave them out instead of stopping")


def run(args) -> int:
    return run_command(lambda: _prepare(args))


def _prepare(args) -> int:
    import sys

    from ..data.discovery import find_cases
    from ..data.splits import format_summary, make_split, parse_missing_rates, save_split
    from ..exit_codes import UsageError

    cases, problems = find_cases(args.data, strict=False)
    if problems and not args.skip_bad:
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        raise UsageError(f"{len(problems)} problem(s) with the cases in {args.data} (listed above; pass --skip-bad "
                         "to leave those cases out)")
    for line in problems:
        print(f"WARNING: skipped: {line}", file=sys.stderr)
    if not cases:
        raise UsageError(f"no usable BraTS case found in {args.data}")
    rates = parse_missing_rates(args.missing_rates) if args.missing_rates else None
    split = make_split(cases, seed=args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                       missing_ratio=args.missing_ratio, missing_rates=rates, data_root=args.data)
    save_split(split, args.out)
    print(format_summary(split))
    print(f"split written to {args.out}")
    return 0
