"""``export``: export a training run as a model bundle (safetensors + JSON).

Exit codes: 0 ok, 3 the run cannot be exported (missing files, tensors that do not match the config),
1 anything else; a one-line ``ERROR:`` message on stderr.
"""

from __future__ import annotations

import sys

HELP = "export a training run as a model bundle (safetensors + JSON)"


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN", help="run folder written by `train` (config.json, mae/, seg/)")
    parser.add_argument("--out", required=True, metavar="PATH", help="bundle folder, or a .zip file")
    parser.add_argument("--note", default=None,
                        help="free-text note stored in bundle.json (default: a 'trained on synthetic data; not for "
                             "clinical use' note when every case of the split is synthetic)")
    parser.add_argument("--split", default=None, metavar="FILE",
                        help="the split file used for training, for provenance (default: RUN/split.json if present)")


def run(args) -> int:
    try:
        from ..inference.bundle import export_bundle, read_bundle

        path = export_bundle(args.run, args.out, {"note": args.note, "split": args.split})
        _, states, _, meta = read_bundle(path)  # prove that what was written loads
        n_tensors = sum(len(s or {}) for s in states.values())
        print(f"wrote {path}: {meta['method']}, {n_tensors} tensors, text encoder {meta['text_encoder']['model_name']}"
              f"{' (UNTRAINED)' if meta['text_encoder']['untrained'] else ''}")
        if meta.get("note"):
            print(f"note: {meta['note']}")
        return 0
    except Exception as error:
        from ..inference.errors import exit_code_for, one_line

        print(f"ERROR: {one_line(error)}", file=sys.stderr)
        return exit_code_for(error)
