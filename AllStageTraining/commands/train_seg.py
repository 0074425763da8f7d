"""``train-seg``: stage 2: co-distillation training of the personalized segmenter (MAE frozen)."""

HELP = "stage 2: co-distillation training of the personalized segmenter (MAE frozen)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("train-seg: not implemented yet")
