"""The package's own exception types, in one leaf module (it imports nothing of the package).

The command-line tools (:func:`pysnn_ref.cli.run_main`) turn every one of them into one line on
stderr: the ``ValueError`` subclasses and :class:`GPUUnavailableError` mean bad input (exit 2),
:class:`NonFiniteLossError` a diverged run (exit 3).
"""

from __future__ import annotations

__all__ = ["DataError", "GPUUnavailableError", "NonFiniteLossError",
           "DistributedUnavailableError", "RunFormatError",
           "BackwardBeforeForwardError"]


class DataError(ValueError):
    """A data file is missing or not in the expected format; the message names path and format."""


class GPUUnavailableError(RuntimeError):
    """Raised when ``device="gpu"`` is chosen but no usable GPU stack is present.

    The message is one line saying what is missing and how to get it.
    """


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the batch."""


class DistributedUnavailableError(ValueError):
    """``--distributed`` without mpi4py (or without a working MPI library)."""


class RunFormatError(ValueError):
    """A file of a run folder (config.json, metrics.jsonl, a checkpoint, energy.json) breaks its
    schema (docs/reliability.md): the message names the file, the key and what was expected."""


class BackwardBeforeForwardError(ValueError, AttributeError):
    """A layer's ``backward`` was called with nothing cached by a ``forward`` (a ValueError; also
    an AttributeError, so ``getattr(layer, "_cache", None)`` keeps working)."""
