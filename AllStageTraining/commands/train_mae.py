"""``train-mae``: stage 1: train the multimodal masked autoencoder on a prepared split."""

HELP = "stage 1: train the multimodal masked autoencoder on a prepared split"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("train-mae: not implemented yet")
