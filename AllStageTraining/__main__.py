"""Entry point of ``python -m AllStageTraining``."""

import sys

from AllStageTraining.cli import main

if __name__ == "__main__":
    sys.exit(main())
