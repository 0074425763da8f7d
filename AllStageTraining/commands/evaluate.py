"""``evaluate``: score predictions laid out per case and scenario against ground truth (15 x 3 table)."""

HELP = "score predictions laid out per case and scenario against ground truth (15 x 3 table)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("evaluate: not implemented yet")
