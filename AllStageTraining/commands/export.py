"""``export``: export a training run as a model bundle (safetensors + JSON).

Exit codes (``exit_codes``): 0 ok, 3 the run cannot be exported (missing files, tensors that do not match the
config), 2 bad input, 1 anything else; a one-line ``ERROR:`` message on stderr.
"""

from __future__ import annotations

from ..exit_codes import run_command

HELP = "export a training run as a model bundle (safetensors + JSON)"


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN", help="run folder written by `train` (config.json, mae/, seg/)")
    parser.add_argument("--out", required=True, metavar="PATH", help="bundle folder, or a .zip file")
    parser.add_argument("--note", default=None,
                        help="free-text note stored in bundle.json (default: a 'trained on synthetic data; not for "
                             "clinical use' note when every case of the split is synthetic)")
    parser.add_argument("--split", default=None, metavar="FILE",
                        help="the split file used for training, for provenance, for a run folder without "
                             "RUN/split.json (default: RUN/split.json)")


def run(args) -> int:
    return run_command(lambda: _export(args))


def _export(args) -> int:
    from ..inference.bundle import export_bundle, read_bundle

    path = export_bundle(args.run, args.out, {"note": args.note, "split": args.split})
    _, states, _, meta = read_bundle(path)  # prove that what was written loads
    n_tensors = sum(len(s or {}) for s in states.values())
    print(f"wrote {path}: {meta['method']}, {n_tensors} tensors, text encoder {meta['text_encoder']['model_name']}"
          f"{' (UNTRAINED)' if meta['text_encoder']['untrained'] else ''}")
    if meta.get("note"):
        print(f"note: {meta['note']}")
    return 0
