"""Kernel sets: ``reference`` (plain NumPy loops, the teaching text), ``cpu`` (Numba), ``cuda``
(numba.cuda). All three expose the same functions with the same signatures; tests assert they
agree. Do not import these modules from functional code: ask :mod:`pysnn_ref.backend`.
"""
