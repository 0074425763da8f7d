"""``prepare``: discover cases and write a split file (train/val/test, training-time missing sequences)."""

HELP = "discover cases and write a split file (train/val/test, training-time missing sequences)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("prepare: not implemented yet")
