"""``synth``: write synthetic BraTS-2020-layout cases built on the MNI152 anatomy."""

HELP = "write synthetic BraTS-2020-layout cases built on the MNI152 anatomy"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise SystemExit("synth: not implemented yet")
