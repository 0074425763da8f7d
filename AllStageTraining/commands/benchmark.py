"""``benchmark``: inference time and memory against MONAI's SegResNet at the default precision and beside it,
each run's share of the measured conv3d peak, where a whole ``predict`` process spends its time, bfloat16
against float32 on a trained bundle, and training step rates.

See ``AllStageTraining.benchmark`` for exactly what is measured. Writes ``OUT/benchmark.json`` and
``OUT/benchmark.md`` and prints the tables. Exit code 1 when a measurement failed (its row says why).
"""

from ..exit_codes import run_command

HELP = ("measure inference time and memory against MONAI's SegResNet, bfloat16 against float32 on a trained "
        "bundle, and training step rates")


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="benchmark", metavar="DIR", help="output folder (default: ./benchmark)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every measured process (default 2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default: cpu")
    parser.add_argument("--bundle", default=None, metavar="PATH",
                        help="a trained bundle: compare its bfloat16 and float32 outputs (labels, synthesized "
                             "sequences) for the 15 scenarios of a case; e.g. Resources/Models/demo_bundle.zip")
    parser.add_argument("--agreement-case", default=None, metavar="DIR",
                        help="the case folder (all four sequences, BraTS layout) for that comparison "
                             "(default: the benchmark's synthetic 1 mm case)")
    parser.add_argument("--timed-bundle", default=None, metavar="PATH",
                        help="time this bundle instead of the paper architecture with random weights")
    parser.add_argument("--quick", action="store_true",
                        help="only SegResNet and our two scenarios at the default precision (no other precision, "
                             "no channels-last or sliding-window variant) and fewer training steps")


def run(args) -> int:
    return run_command(lambda: _benchmark(args))


def _benchmark(args) -> int:
    from ..benchmark import markdown_table, run_benchmark
    from ..runtime import resolve_device

    resolve_device(args.device)  # an unavailable GPU fails here, before anything is written
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, not {args.threads}")
    for bundle in (args.bundle, args.timed_bundle):  # an unusable bundle fails here too (exit code 3)
        if bundle is not None:
            from ..inference.bundle import load_bundle_models

            load_bundle_models(bundle)
    report = run_benchmark(args.out, threads=args.threads, device=args.device, quick=args.quick, bundle=args.bundle,
                           timed_bundle=args.timed_bundle, agreement_case=args.agreement_case,
                           say=lambda line: print(line, flush=True))
    print(markdown_table(report))
    return 1 if _failed(report) else 0


def _failed(report: dict) -> list[str]:
    """The names of the measurements that failed."""
    groups = {"run": report["runs"], "predict process": report["predict_process"], "step rate": report["step_rates"],
              "": {"conv3d peak": report["conv3d_peak"], "agreement": report.get("precision_agreement") or {}}}
    return [f"{group} {name}".strip() for group, results in groups.items() for name, r in results.items()
            if "error" in r]
