"""Data-parallel training over MPI (mpi4py): one seam, a single-process fallback.

``mpiexec -n W python -m pysnn_ref.train --distributed ...`` runs W copies of the trainer.
Every copy builds the same network (the seed fixes it; :func:`broadcast_parameters` makes it
certain, e.g. after ``--resume``), walks the same seeded order of global mini-batches of
``--batch-size`` B, and trains on its contiguous slice of each (:func:`shard_slice`).  After
the backward pass of each step the parameter gradients go through one all-reduce of one flat
buffer (:func:`allreduce_gradients`)::

    buf = [n_r * g_r (every parameter, flattened) | n_r * loss_r | n_r]     on rank r
    MPI Allreduce(SUM, in place);  N = sum_r n_r;  g = buf / N

Each rank's loss is the mean over its n_r samples, so ``n_r * g_r`` is the gradient of the
*sum* over its shard and ``g`` is the gradient of the mean over the whole global batch: the
same gradient one process computes on the whole batch (up to float rounding), shards of
unequal size included.  Every rank then takes the same optimizer step, so the weights stay
identical without being sent again.

What is not all-reduced per step: BatchNorm running statistics (averaged over ranks once per
epoch, :func:`end_epoch`; the forward batch statistics are per shard, so a BN network is *not*
equal to one process -- SyncBN would all-reduce them in every layer's forward), ASF's scale
factor S (each rank estimates it from its own shards), and SSF's R with
``--r-granularity layer`` (pooled over the shard).  The per-sample quantities of BPTT and SSF
(neuron / channel / sample granularity) are shard-invariant, so BN-free networks trained by
bptt or ssf with direct encoding reach the one-process weights.  The Poisson encoder draws its
spikes per batch from one stream, so a shard's spikes differ from the same samples' spikes in
one process (same distribution, other draws).

GPU: CuPy gradients are packed on the device, copied to the host for the all-reduce and back
(one device-to-host and one host-to-device copy of the flat buffer per step), unless
``PYSNN_MPI_CUDA_AWARE=1`` says the MPI library is CUDA-aware; then the device buffer is handed
to MPI directly.  The ``mpich`` wheel from PyPI is not CUDA-aware.

``python -m pysnn_ref.bench.distributed ...`` is the timing worker behind
``python -m pysnn_ref.bench --workers 1,2`` (:mod:`pysnn_ref.bench.distributed`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend
from ..errors import DistributedUnavailableError
from ..parameter import Parameter

CUDA_AWARE_ENV = "PYSNN_MPI_CUDA_AWARE"

__all__ = ["LocalComm", "MPIComm", "init", "shard_slice",
           "pack", "unpack", "allreduce_gradients", "broadcast_parameters", "reduce_sums",
           "average_buffers", "end_epoch"]


class LocalComm:
    """One process: rank 0 of 1; every collective leaves its buffer as it is."""

    rank = 0
    local_rank = 0  # this process's rank among the ranks on its machine (picks its GPU)
    size = 1
    cuda_aware = False

    def sum_(self, buf: Any) -> Any:
        """Element-wise sum over ranks, in place (here: nothing to add)."""
        return buf

    def bcast_(self, buf: Any) -> Any:
        """Rank 0's values into ``buf`` on every rank, in place."""
        return buf

    def min_int(self, v: int) -> int:
        """The smallest ``v`` over ranks."""
        return int(v)

    def abort(self, code: int) -> None:
        """End every rank now with exit code ``code`` (one process: nothing to end)."""

    def __repr__(self) -> str:
        return "LocalComm(rank=0, size=1)"


class MPIComm(LocalComm):
    """``MPI.COMM_WORLD`` of mpi4py: in-place Allreduce (SUM) and Bcast of contiguous arrays."""

    def __init__(self) -> None:
        from mpi4py import MPI  # optional: mpi4py, only with --distributed

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        # the ranks that share this machine (and its GPUs): rank r on a node uses GPU r
        self.local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        self.cuda_aware = os.environ.get(CUDA_AWARE_ENV, "") == "1"

    def sum_(self, buf: Any) -> Any:
        if self.size > 1:
            self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        return buf

    def bcast_(self, buf: Any) -> Any:
        if self.size > 1:
            self.comm.Bcast(buf, root=0)
        return buf

    def min_int(self, v: int) -> int:
        return int(self.comm.allreduce(int(v), op=self._MPI.MIN))

    def abort(self, code: int) -> None:
        if self.size > 1:
            self.comm.Abort(code)   # MPI_Abort: every rank of the job ends, mpiexec returns

    def __repr__(self) -> str:
        return f"MPIComm(rank={self.rank}, size={self.size}, cuda_aware={self.cuda_aware})"


def init(distributed: bool = True) -> LocalComm:
    """The communicator of this process: :class:`MPIComm` when ``distributed`` (mpi4py is
    imported only then; one rank is a valid world), else :class:`LocalComm`.

    Raises :class:`DistributedUnavailableError` when mpi4py cannot be imported.
    """
    if not distributed:
        return LocalComm()
    try:
        return MPIComm()
    except ImportError as e:
        raise DistributedUnavailableError(
            f"--distributed needs mpi4py and an MPI library ({e}); install them with "
            "pip install -e '.[mpi]' and start with mpiexec -n 2 ...") from None


def shard_slice(n: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s contiguous part of a global batch of ``n`` samples: the slices of ranks
    0..size-1 are in order, cover ``range(n)`` exactly once, and differ in length by <= 1."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, size) with size >= 1, got rank={rank}, "
                         f"size={size}")
    return slice(n * rank // size, n * (rank + 1) // size)


def pack(arrays: Sequence[Any], extra: Sequence[float] = (), scale: float = 1.0) -> Any:
    """One contiguous flat buffer: ``scale * arrays`` (each flattened, in order) followed by
    ``extra``; on the arrays' device, in the dtype of the first array."""
    xp = backend.array_module(arrays[0])
    dtype = arrays[0].dtype
    n = sum(int(a.size) for a in arrays)
    buf = xp.empty(n + len(extra), dtype=dtype)
    i = 0
    for a in arrays:
        xp.multiply(a.reshape(-1), scale, out=buf[i:i + a.size])
        i += a.size
    if extra:
        buf[i:] = xp.asarray(np.asarray(extra, dtype=dtype))
    return buf


def unpack(buf: Any, arrays: Sequence[Any], scale: float = 1.0) -> Any:
    """Write ``scale * buf`` back into ``arrays`` (inverse of :func:`pack`); returns the
    trailing extra values of ``buf`` (the elements after the arrays') as a host array."""
    i = 0
    for a in arrays:
        a[...] = (buf[i:i + a.size] * scale).reshape(a.shape)
        i += a.size
    return backend.to_numpy(buf[i:]) * scale


def _sum_(comm: LocalComm, buf: Any) -> Any:
    """All-reduce ``buf`` in place, staged through the host for device arrays unless the MPI
    library is CUDA-aware."""
    if isinstance(buf, np.ndarray):
        return comm.sum_(buf)
    if comm.cuda_aware:
        backend.get_backend("gpu").synchronize()  # the packing kernels have finished
        return comm.sum_(buf)
    host = comm.sum_(backend.to_numpy(buf))
    buf[...] = backend.array_module(buf).asarray(host)
    return buf


def allreduce_gradients(comm: LocalComm, params: Sequence[Parameter], loss: float,
                        n_local: int) -> tuple[float, int]:
    """All-reduce the gradients of one step in one flat buffer (see the module docstring).

    ``loss`` is this rank's mean loss over its ``n_local`` samples and every ``p.grad`` the
    gradient of that mean.  Afterwards every ``p.grad`` is the gradient of the mean loss over
    the global batch, on every rank.  Returns ``(global mean loss, global batch size)``.
    With one rank nothing is touched (no rounding from the rescaling) and ``loss`` comes back as
    it is (a 0-d device array stays on the device); with more ranks the loss is staged through
    the host with the gradients and comes back as a float.
    """
    if comm.size == 1:
        return loss, int(n_local)
    grads = [p.grad for p in params]
    buf = pack(grads, extra=(float(loss) * n_local, float(n_local)), scale=float(n_local))
    _sum_(comm, buf)
    N = float(backend.to_numpy(buf[-1:])[0])
    loss_sum = unpack(buf[:-1], grads, scale=1.0 / N)[0] * N
    return float(loss_sum / N), int(round(N))


def broadcast_parameters(comm: LocalComm, params: Sequence[Parameter]) -> None:
    """Every rank's parameters := rank 0's (one flat buffer)."""
    if comm.size == 1 or not params:
        return
    data = [p.data for p in params]
    buf = pack(data)
    if isinstance(buf, np.ndarray) or comm.cuda_aware:
        comm.bcast_(buf)
    else:
        host = comm.bcast_(backend.to_numpy(buf))
        buf = backend.array_module(buf).asarray(host)
    unpack(buf, data)


def reduce_sums(comm: LocalComm, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks of a small host vector (float64)."""
    return comm.sum_(np.array(values, dtype=np.float64))


def average_buffers(comm: LocalComm, net: Any) -> None:
    """Average every module buffer (BatchNorm running mean / variance) over ranks, in place:
    the running statistics then estimate the population over all ranks' shards."""
    if comm.size == 1:
        return
    for m in net.modules():
        for name in m.buffer_names():
            buf = getattr(m, name)
            if not hasattr(buf, "dtype") or buf.dtype.kind != "f":
                continue
            flat = pack([buf])
            _sum_(comm, flat)
            unpack(flat, [buf], scale=1.0 / comm.size)


def end_epoch(comm: LocalComm, stats: Any, net: Any) -> None:
    """Once per epoch: sum the training metrics ``loss_sum``, ``correct``, ``seen`` and
    ``rate_sum`` of ``stats`` over ranks (one small all-reduce; the forward / backward times
    stay rank-local) and average the BatchNorm running statistics."""
    if comm.size == 1:
        return
    head = [stats.loss_sum, stats.correct, stats.seen]
    v = reduce_sums(comm, np.concatenate([np.asarray(head, dtype=np.float64),
                                          np.asarray(stats.rate_sum, dtype=np.float64)]))
    stats.loss_sum, stats.correct, stats.seen = float(v[0]), int(round(v[1])), int(round(v[2]))
    stats.rate_sum = v[3:]
    average_buffers(comm, net)

