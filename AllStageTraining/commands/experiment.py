"""``experiment``: run a grid of methods x training missing ratios and write one comparison."""

HELP = "run a grid of methods x training missing ratios and write one comparison"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("experiment: not implemented yet")
