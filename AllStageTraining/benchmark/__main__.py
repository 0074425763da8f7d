"""``python -m AllStageTraining.benchmark KIND SPEC_JSON``: one measurement in this fresh process; prints
``RESULT <json>``. Started by ``processes.run_child``, not by users."""

from __future__ import annotations

import json
import sys


def _children() -> dict:
    from .agreement import child_agreement
    from .conv_peak import child_conv_peak
    from .inference import child_ours, child_segresnet
    from .training import child_step_rate

    return {"ours": child_ours, "segresnet": child_segresnet, "agreement": child_agreement,
            "conv_peak": child_conv_peak, "step_rate": child_step_rate}


def main(argv: list[str]) -> int:
    kind, spec = argv[0], json.loads(argv[1])
    result = _children()[kind](spec)
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
