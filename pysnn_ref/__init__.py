"""pysnn_ref: a from-scratch reference library for training spiking neural networks.

Layers are forward/backward pairs written by hand from the papers' equations
(:mod:`pysnn_ref.functional`), with plain NumPy reference kernels, Numba CPU kernels and
numba.cuda GPU kernels behind one device seam (:mod:`pysnn_ref.backend`).
"""

from . import backend as _backend  # noqa: F401 - sets the CPU thread policy before Numba runs

__version__ = "0.1.0"
