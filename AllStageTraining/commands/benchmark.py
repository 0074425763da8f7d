"""``benchmark``: measure inference time and memory against MONAI's SegResNet, and training step rates."""

HELP = "measure inference time and memory against MONAI's SegResNet, and training step rates"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("benchmark: not implemented yet")
