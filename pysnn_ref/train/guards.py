"""What stops a run: a NaN / infinite loss or weight (exit 3, naming the epoch and the batch),
and, with ``--distributed`` on several ranks, an error on one rank ending every rank
(docs/reliability.md).  Used by :mod:`pysnn_ref.train.loop`."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import backend
from ..cli import exit_line
from ..errors import NonFiniteLossError

__all__ = ["TRAIN_PROG", "non_finite_loss", "count_bad_weights", "weights_error",
           "abort_world_on_error"]

TRAIN_PROG = "python -m pysnn_ref.train"   #: the name in the lines of --distributed aborts


def _where(epoch: int, b0: int, b1: int) -> tuple[str, str]:
    where = f"batch {b0 + 1}" if b0 == b1 else f"one of batches {b0 + 1}-{b1 + 1}"
    good = (f"last.npz holds epoch {epoch}, the last good one" if epoch > 0
            else "no checkpoint was written")
    return where, good


def non_finite_loss(st: Any, value: float, epoch: int, b0: int, b1: int,
                T: int) -> NonFiniteLossError:
    """The error for a NaN / infinite loss found in batches ``b0..b1`` (0-based) of ``epoch``."""
    where, good = _where(epoch, b0, b1)
    return NonFiniteLossError(
        f"loss became {value} at epoch {epoch + 1}, {where} (of {st.n_batches}, T={T}, "
        f"lr={st.opt.lr:g}); training stopped ({good}) -- lower --lr or check the data")


def count_bad_weights(st: Any) -> Any:
    """How many parameters hold NaN / inf after the update: a host number on the CPU, a 0-d
    device array on the GPU (no transfer; read with the epoch's sums).  A finite loss does not
    prove finite weights (NaN currents give no spikes, so the loss of a network with NaN weights
    can stay finite; an overflowing learning rate or optimizer state shows in the weights
    first); optimizer state that is NaN makes the weights NaN at the same step."""
    xp = st.be.xp
    flags = [xp.isfinite(p.data).all() for p in st.net.parameters()]
    if st.be.name == "cpu":
        return sum(not bool(f) for f in flags)
    return len(flags) - xp.stack(flags).sum()


def weights_error(st: Any, epoch: int, b0: int, b1: int, T: int) -> NonFiniteLossError:
    """The error (exit 3) for NaN / inf weights found after an update in batches ``b0..b1``."""
    bad = [k for k, p in st.net.named_parameters().items()
           if not bool(backend.as_scalar(st.be.xp.isfinite(p.data).all()))]
    where, good = _where(epoch, b0, b1)
    return NonFiniteLossError(
        f"weights became NaN/inf (parameter {bad[0] if bad else '?'}"
        f"{' and more' if len(bad) > 1 else ''}) after the update at epoch {epoch + 1}, {where} "
        f"(of {st.n_batches}, T={T}, lr={st.opt.lr:g}); training stopped ({good}) -- lower --lr "
        "or check the neuron settings")


@contextmanager
def abort_world_on_error(comm: Any) -> Iterator[None]:
    """``--distributed`` on several ranks, once they train in step: an exception on one rank
    (rank 0 cannot write a checkpoint, ...) would leave the others waiting in the next
    all-reduce forever.  Print its one line (:func:`pysnn_ref.cli.exit_line`, naming the rank)
    and end every rank with ``MPI_Abort`` and the exit code the error would have had."""
    try:
        yield
    except BaseException as e:
        if comm.size > 1:
            line, code = exit_line(e, TRAIN_PROG)
            if code == 1:  # a bug: its traceback is what a developer needs
                traceback.print_exc()
            print(line.replace(": ", f": rank {comm.rank}: ", 1), file=sys.stderr, flush=True)
            comm.abort(code)
        raise
