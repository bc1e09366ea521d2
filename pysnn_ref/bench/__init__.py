"""Benchmarks: ``python -m pysnn_ref.bench`` and what it measures.

==================  ==========================================================================
``__main__``        the command line (flags, the sweep over methods x T, output files)
``measure``         the benchmark networks, synthetic batches, timing, peak memory, threads
``report``          tables, CSV / JSON / Markdown files and figures of the records
``kernels``         ``python -m pysnn_ref.bench.kernels``: the fused LIF + pooling kernels alone
``distributed``     the MPI timing worker behind ``--workers`` (strong scaling)
``torch_ref``       the PyTorch autograd baseline of the same network (``--vs-torch``)
``sweep``           :func:`benchmark`: the same sweep from Python, options as keyword arguments
==================  ==========================================================================
"""

from .sweep import benchmark

__all__ = ["benchmark"]   # the subsystems are the modules above; import them by name
