"""``predict``: segment one case (or a folder of cases) from any subset of the four sequences."""

HELP = "segment one case (or a folder of cases) from any subset of the four sequences"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("predict: not implemented yet")
