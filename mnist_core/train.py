"""`python -m mnist_core.train`: the command-line trainer (mnist_core.training.cli)."""

import sys

from mnist_core.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
