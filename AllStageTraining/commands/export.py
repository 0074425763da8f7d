"""``export``: export a training run as a model bundle (safetensors + JSON)."""

HELP = "export a training run as a model bundle (safetensors + JSON)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("export: not implemented yet")
