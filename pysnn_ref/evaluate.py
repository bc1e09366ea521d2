"""``python -m pysnn_ref.evaluate``: the command's name; the code is
:mod:`pysnn_ref.train.evaluate`."""

import sys

from .train.evaluate import cli

__all__ = ["cli"]

if __name__ == "__main__":
    sys.exit(cli())
