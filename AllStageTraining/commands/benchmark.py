"""``benchmark``: measure inference time and memory against MONAI's SegResNet, and training step rates.

See ``AllStageTraining.benchmark`` for exactly what is measured. Writes ``OUT/benchmark.json`` and
``OUT/benchmark.md`` and prints the table.
"""

from ..exit_codes import run_command

HELP = "measure inference time and memory against MONAI's SegResNet, and training step rates"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="benchmark", metavar="DIR", help="output folder (default: ./benchmark)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every measured process (default 2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default: cpu")
    parser.add_argument("--bundle", default=None, metavar="PATH",
                        help="benchmark this trained bundle instead of the paper architecture with random weights")
    parser.add_argument("--quick", action="store_true",
                        help="only SegResNet and our two scenarios in float32 (no bf16, no sliding-window variant)")


def run(args) -> int:
    return run_command(lambda: _benchmark(args))


def _benchmark(args) -> int:
    from ..benchmark import markdown_table, run_benchmark
    from ..runtime import resolve_device

    resolve_device(args.device)  # an unavailable GPU fails here, before anything is written
    report = run_benchmark(args.out, threads=args.threads, device=args.device, quick=args.quick,
                           bundle=args.bundle, say=lambda line: print(line, flush=True))
    print(markdown_table(report))
    failed = [name for name, r in report["runs"].items() if "error" in r]
    return 1 if failed else 0
