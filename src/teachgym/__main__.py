"""``python -m teachgym``: the ``teachgym`` command, also as ``accelerate launch ... -m teachgym run CONFIG``."""

import sys

from teachgym.cli import main

if __name__ == "__main__":
    sys.exit(main())
