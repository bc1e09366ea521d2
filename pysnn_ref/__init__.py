"""pysnn_ref: a from-scratch reference library for training spiking neural networks.

Layers are forward/backward pairs written by hand from the papers' equations
(:mod:`pysnn_ref.functional`), with plain NumPy reference kernels, Numba CPU kernels and
numba.cuda GPU kernels behind one device seam (:mod:`pysnn_ref.backend`).
"""

import os as _os
import signal as _signal
import sys as _sys
import threading as _threading


def interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C while ``python -m pysnn_ref.<tool>`` is still importing (NumPy, Numba, ...
    take a second): one line and exit code 130 instead of a traceback.  The tool's
    :func:`pysnn_ref.cli.run_main` hands Ctrl-C back to Python (``KeyboardInterrupt``)."""
    argv = getattr(_sys, "orig_argv", [])
    tool = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else "pysnn_ref"
    _os.write(2, f"python -m {tool}: interrupted\n".encode())
    _os._exit(130)


if _sys.argv[:1] == ["-m"] and _threading.current_thread() is _threading.main_thread():
    _signal.signal(_signal.SIGINT, interrupted_while_starting)   # only under python -m

from . import backend as _backend  # noqa: E402, F401 - sets the CPU thread policy before Numba runs

__version__ = "0.1.0"
