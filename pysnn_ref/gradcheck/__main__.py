"""``python -m pysnn_ref.gradcheck``: every hand-written backward against finite differences."""

from .networks import main

if __name__ == "__main__":
    raise SystemExit(main())
