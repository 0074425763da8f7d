"""``train``: stage 1, stage 2 and the 15-scenario evaluation of the test split, in one run folder."""

HELP = "stage 1, stage 2 and the 15-scenario evaluation of the test split, in one run folder"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("train: not implemented yet")
