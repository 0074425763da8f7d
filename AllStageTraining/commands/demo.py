"""``demo``: synthesize data, train, evaluate, export and report: the whole pipeline on the CPU."""

HELP = "synthesize data, train, evaluate, export and report: the whole pipeline on the CPU"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("demo: not implemented yet")
