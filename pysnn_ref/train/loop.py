"""The training loop behind ``python -m pysnn_ref.train`` (:mod:`pysnn_ref.train` is the CLI).

One epoch (:func:`run_epoch`)::

    method.check_network(net); method.begin_epoch(net, epoch)   # ASF: scale-factor refresh
    [--dspike-adapt: pick the Dspike temperature b by FDG cosine similarity, Dspike Alg. 1]
    for every mini-batch (seeded order):                         # train_step
        net.zero_grad()
        y = method.forward(net, x, T, encoder)                 # (T, B, classes)
        loss, cache = <loss>_forward(y, labels); dy = <loss>_backward(cache)
        method.backward(net, dy); optimizer.step()
    test accuracy with net.eval() (BatchNorm running statistics)     # evaluate_model
    metrics.jsonl line, best.npz / last.npz                          # runlog, checkpoint

:func:`train_step` is the one place where a mini-batch is trained on.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import backend
from .. import nn as nn_
from ..cli import check_interrupted
from ..data import Dataset, augment_cifar, check_encoder, iterate_minibatches, load_dataset
from ..energy import estimate_energy
from ..functional import loss as L
from ..functional.surrogate import get_surrogate
from ..methods import Method, StepTimes
from ..optim import Optimizer, make_optimizer, make_schedule
from . import distributed, runlog
from .checkpoint import neuron_state, read_checkpoint, restore_neuron_state, save_checkpoint
from .config import (
    S_AUGMENT,
    S_FDG,
    S_FDG_INPUT,
    S_ORDER,
    SPLIT_SEED,
    RunConfig,
    as_run_config,
    build_method,
    build_model,
    epoch_rng,
    loss_functions,
    make_encoder,
)
from .dspike import adapt_dspike, first_weight
from .evaluate import evaluate_model
from .flags import check_model_flags
from .guards import abort_world_on_error, count_bad_weights, non_finite_loss, weights_error

__all__ = ["TrainState", "StepResult", "train", "setup_run", "run_epoch", "train_step",
           "spiking_layer_names"]


# ================================================================================================
# the state of a run
# ================================================================================================

@dataclass
class TrainState:
    """Everything a training run carries from one epoch to the next."""

    cfg: RunConfig
    be: Any                       # the array backend of cfg.device
    dtype: np.dtype
    data: Dataset
    net: nn_.Module
    method: Method
    opt: Optimizer
    loss_fwd: Callable
    loss_bwd: Callable
    layer_names: list[str]        # "2:LIF", ... (spiking_layer_names)
    spiking: list[nn_.LIF]
    n_params: int
    n_batches: int                # training batches per epoch
    start_epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    dspike_b: float | None = None
    run_dir: Path = Path()
    history: list[dict[str, Any]] = field(default_factory=list)
    comm: distributed.LocalComm = field(default_factory=distributed.LocalComm)

    @property
    def stages(self) -> list[list[int]]:
        """The training stages ``(T, epochs)`` (one unless time inheritance training)."""
        return self.cfg.stages

    @property
    def total(self) -> int:
        """Epochs over all stages."""
        return sum(e for _, e in self.cfg.stages)


@dataclass
class StepResult:
    """What :func:`train_step` returns: the loss (a float on the CPU, a 0-d array on the GPU:
    it is not read there), the network output on the device and the step's forward / backward
    spans (:class:`~pysnn_ref.methods.StepTimes`) of marks of the backend ``be``."""

    loss: Any
    out: Any
    times: StepTimes
    be: Any
    bad_weights: Any = 0          # parameters holding NaN/inf after the update (0-d on the GPU)
    rates: list[Any] = field(default_factory=list)   # each spiking layer's spike rate

    @property
    def forward_s(self) -> float:
        """Seconds of the forward pass (on the GPU: waits for the step to finish)."""
        return sum(self.be.elapsed(a, b) for a, b in self.times.forward)

    @property
    def backward_s(self) -> float:
        """Seconds of the method's backward pass (on the GPU: waits for the step to finish)."""
        return sum(self.be.elapsed(a, b) for a, b in self.times.backward)


def spiking_layer_names(net: nn_.Module) -> list[tuple[str, nn_.LIF]]:
    """``(name, layer)`` of every spiking layer, bottom to top.  The name is the layer's index
    path in the nested Sequential / Residual containers and its kind: ``"2:LIF"``,
    ``"4.0.2:IF"``."""
    out: list[tuple[str, nn_.LIF]] = []
    for path, m in net.named_modules():
        if isinstance(m, nn_.LIF):
            out.append((f"{path}:{'IF' if m.p.lam == 1.0 else 'LIF'}", m))
        elif isinstance(m, (nn_.SpikingLSTM, nn_.SynapticLIF)):  # spike too: rates logged
            out.append((f"{path}:{type(m).__name__}", m))
    return out


def _stage_of(stages: list[list[int]], epoch: int) -> tuple[int, int, int]:
    """(stage index, T, first epoch of the stage) of a 0-based global ``epoch``."""
    start = 0
    for s, (T, E) in enumerate(stages):
        if epoch < start + E:
            return s, T, start
        start += E
    raise ValueError(f"epoch {epoch} is past the last stage")


# ================================================================================================
# setup
# ================================================================================================

def _load_data(cfg: RunConfig) -> tuple[Dataset, RunConfig]:
    """The run's dataset, and the configuration with what the data tells (input shape,
    classes, sizes)."""
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=SPLIT_SEED)
    if cfg.augment and len(data.input_shape) != 3:
        raise ValueError(f"--augment needs image inputs (C, H, W), the {cfg.dataset} inputs "
                         f"have shape {data.input_shape}")
    check_encoder(cfg.dataset, cfg.encoder)  # nmnist: events; digits-rows: sequence
    return data, cfg.replace(input_shape=tuple(data.input_shape),
                             num_classes=int(data.num_classes), n_train=int(len(data.y_train)),
                             n_test=int(len(data.y_test)))


def _restore(net: nn_.Module, cfg: RunConfig, resume: str | Path,
             dspike_b: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the checkpoint ``resume`` into ``net``; returns ``(optimizer state, progress)``
    where progress holds start_epoch, best_acc, best_epoch, dspike_b."""
    model_state, optim_state, meta = read_checkpoint(resume)
    net.load_state_dict(model_state)
    restore_neuron_state(net, meta["neurons"])
    total = sum(e for _, e in cfg.stages)
    if meta["epoch"] > total:
        raise ValueError(f"--epochs: the checkpoint {resume} is at epoch {meta['epoch']}, "
                         f"past the {total} epochs asked for; give --epochs >= "
                         f"{meta['epoch']} (or a longer --tit)")
    if dspike_b is not None:
        dspike_b = meta.get("dspike_b", dspike_b)
    return optim_state, {"start_epoch": meta["epoch"], "best_acc": meta["best_acc"],
                         "best_epoch": meta["best_epoch"], "dspike_b": dspike_b}


def setup_run(cfg: RunConfig | dict[str, Any], resume: str | Path | None = None
              ) -> TrainState:
    """Data, network, method, loss and optimizer of ``cfg`` (a :class:`RunConfig`, or a dict
    made into one), restored from the checkpoint ``resume`` if given; the network is on
    ``cfg.device``.  No files are written."""
    cfg = as_run_config(cfg)
    # fails early without a usable GPU, or without cuRAND for a Poisson input on the GPU
    be = backend.get_backend(cfg.device, need_random=cfg.encoder == "poisson")
    data, cfg = _load_data(cfg)
    net = build_model(cfg, data.input_shape, data.num_classes)
    check_model_flags(cfg, net)
    method = build_method(cfg)
    method.check_network(net)
    loss_fwd, loss_bwd = loss_functions(cfg)
    dspike_b = get_surrogate(cfg.surrogate).a if cfg.dspike_adapt else None
    optim_state, progress = None, {"dspike_b": dspike_b}
    if resume is not None:
        optim_state, progress = _restore(net, cfg, resume, dspike_b)
    net.to(cfg.device)
    opt = make_optimizer(cfg.optimizer, net.parameters(), cfg.lr,
                         weight_decay=cfg.weight_decay,
                         **({"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}))
    if optim_state is not None:
        opt.load_state_dict(optim_state)  # buffers go to the parameters' device
    named = spiking_layer_names(net)
    n_batches = math.ceil(len(data.y_train) / cfg.batch_size)
    if cfg.max_batches is not None:
        n_batches = min(n_batches, cfg.max_batches)
    return TrainState(cfg=cfg, be=be, dtype=np.dtype(cfg.dtype), data=data, net=net,
                      method=method, opt=opt, loss_fwd=loss_fwd, loss_bwd=loss_bwd,
                      layer_names=[n for n, _ in named], spiking=[la for _, la in named],
                      n_params=sum(int(p.data.size) for p in net.parameters()),
                      n_batches=n_batches, **progress)


# ================================================================================================
# one mini-batch, one epoch
# ================================================================================================

def train_step(st: TrainState, xd: Any, yd: Any, T: int, encoder: Any, *, epoch: int,
               batch: int) -> StepResult:
    """One mini-batch ``(xd, yd)`` (on the device): zero_grad, then the method's own step
    (:meth:`pysnn_ref.methods.Method.train_step`: forward, the loss, backward -- per time step
    for the online methods), which calls back for the update: the gradient all-reduce
    (``--distributed``, one flat buffer,
    :func:`pysnn_ref.train.distributed.allreduce_gradients`), the NaN check, the optimizer step.

    ``epoch`` / ``batch`` (0-based) only name the place in the error message.  Raises
    :class:`~pysnn_ref.cli.NonFiniteLossError` when the loss is NaN or infinite (before any
    parameter changes) if the loss is a host number (the CPU, or ``--distributed`` on several
    ranks, whose all-reduce stages through the host).  A loss on the GPU is not read here: the
    step makes no device->host transfer, and the check happens where :class:`_EpochStats` reads
    its sums (:func:`_train_batches`, every :data:`GPU_READ_EVERY` batches and at the epoch end).
    """
    net, be = st.net, st.be
    check_interrupted()  # a Ctrl-C that a library swallowed (cli.INTERRUPTED)
    net.zero_grad()
    bad: list[Any] = [0]

    def update(loss: Any) -> Any:
        """After the method's backward (once per batch; OTTT_O: after every time step)."""
        # --distributed: one flat all-reduce makes the grads the global batch's (identity on 1
        # rank); the NaN check reads the global loss so that every rank stops at the same step
        g_loss, _ = distributed.allreduce_gradients(st.comm, net.parameters(), loss,
                                                    int(yd.shape[0]))
        if not backend.is_gpu_array(g_loss) and not math.isfinite(g_loss):
            raise non_finite_loss(st, g_loss, epoch, batch, batch, T)
        st.opt.step()
        bad[0] = bad[0] + count_bad_weights(st)   # on the GPU a 0-d device array
        if be.name == "cpu" and bad[0]:
            raise weights_error(st, epoch, batch, batch, T)
        return g_loss

    loss, out, times = st.method.train_step(net, xd, yd, T, encoder, st.loss_fwd, st.loss_bwd,
                                            update, be.mark)
    return StepResult(loss, out, times, be, bad[0], st.method.spike_rates(st.spiking))


#: on the GPU, the epoch's running sums are read to the host (one transfer; the NaN check, the
#: progress bar) every this many batches and at the epoch end; on the CPU after every batch
GPU_READ_EVERY = 50


@dataclass
class _EpochStats:
    """Running sums of one training epoch.

    :meth:`add` keeps each batch's loss, correct count and firing rates where they were
    computed: on the GPU they are added up as 0-d device arrays, so a step makes no
    device->host transfer.  :meth:`read` moves the sums gathered since the last read to the
    host in one transfer (:func:`pysnn_ref.backend.host_scalars`) and adds them to
    ``loss_sum``, ``correct`` and ``rate_sum``; it returns the loss sum it read, for the NaN
    check.  ``seen`` counts every added sample, read or not.
    """

    n_layers: int
    t_fwd: float = 0.0
    t_bwd: float = 0.0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    rate_sum: np.ndarray = field(init=False)
    unread: int = 0                   # batches added since the last read
    bad_weights: int = 0              # steps that left NaN/inf in a parameter (read so far)
    _pending: list[Any] | None = None
    _marks: list[tuple[Any, tuple[Any, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rate_sum = np.zeros(self.n_layers)

    def add(self, r: StepResult, yd: Any, spiking: list[nn_.Module]) -> None:
        nb = int(yd.shape[0])
        vals = [backend.as_scalar(r.loss) * nb, (L.predict(r.out) == yd).sum(), r.bad_weights,
                *(backend.as_scalar(rate) * nb for rate in r.rates)]  # last forward's rates
        self._pending = vals if self._pending is None else \
            [a + v for a, v in zip(self._pending, vals, strict=True)]
        self._marks.append((r.be, r.times))
        self.seen += nb
        self.unread += 1

    def read(self) -> float:
        """Bring the pending sums (and the step times) to the host; the loss sum read (0.0 if
        nothing was pending)."""
        for be, times in self._marks:
            self.t_fwd += sum(be.elapsed(a, b) for a, b in times.forward)
            self.t_bwd += sum(be.elapsed(a, b) for a, b in times.backward)
        self._marks.clear()
        self.unread = 0
        if self._pending is None:
            return 0.0
        v = backend.host_scalars(self._pending)
        self._pending = None
        self.loss_sum += float(v[0])
        self.correct += int(round(v[1]))
        self.bad_weights += int(v[2])
        self.rate_sum += v[3:]
        return float(v[0])


def _device_batches(st: TrainState, epoch: int) -> Iterator[tuple[Any, Any]]:
    """An epoch's training batches in seeded order, augmented if asked, moved to the device
    (one host-to-device copy per batch); at most ``st.n_batches``."""
    cfg = st.cfg
    order_rng = epoch_rng(cfg.seed, epoch, S_ORDER)
    aug_rng = epoch_rng(cfg.seed, epoch, S_AUGMENT)
    for b, (xb, yb) in enumerate(iterate_minibatches(st.data.x_train, st.data.y_train,
                                                     cfg.batch_size, shuffle=True,
                                                     rng=order_rng)):
        if b >= st.n_batches:
            return
        if cfg.augment:
            xb = augment_cifar(xb, aug_rng)
        if st.comm.size > 1:  # this rank's contiguous slice of the global batch
            part = distributed.shard_slice(len(yb), st.comm.rank, st.comm.size)
            xb, yb = xb[part], yb[part]
        yield st.be.asarray(xb, dtype=st.dtype), st.be.asarray(yb)


def _begin_epoch(st: TrainState, epoch: int, log: Callable[[str], None]) -> tuple[int, int]:
    """Learning rate of the epoch, time-inheritance stage change, the method's epoch start.
    Returns ``(stage, T)``."""
    cfg, stages = st.cfg, st.stages
    stage, T, stage_start = _stage_of(stages, epoch)
    stage_lr = cfg.lr if stage == 0 else cfg.tit_lr
    st.opt.lr = make_schedule(cfg.schedule, stage_lr, stages[stage][1]).lr_at(
        epoch - stage_start)
    if stage > 0 and epoch == stage_start:
        log(f"time inheritance: stage {stage + 1}/{len(stages)}, T {stages[stage - 1][0]}"
            f" -> {T}, same weights and optimizer state")
    st.method.check_network(st.net)
    st.method.begin_epoch(st.net, epoch)
    return stage, T


def _dspike_epoch(st: TrainState, epoch: int, T: int, first: tuple[Any, Any],
                  log: Callable[[str], None]) -> float:
    """``--dspike-adapt`` on the epoch's first batch: update ``st.dspike_b``, log it; returns
    the chosen temperature's cosine similarity."""
    cfg = st.cfg
    t0 = time.perf_counter()
    xe = make_encoder(cfg, epoch, S_FDG_INPUT).encode(first[0], T)  # fixed spikes
    st.dspike_b, cos = adapt_dspike(st.net, st.method, xe, first[1], st.dspike_b, st.loss_fwd,
                                    st.loss_bwd, n_samples=cfg.fdg_samples,
                                    rng=epoch_rng(cfg.seed, epoch, S_FDG))
    cands = " ".join(f"{c:g}:{v:.3f}" for c, v in sorted(cos.items()))
    n_fdg = min(cfg.fdg_samples, int(first_weight(st.net)[1].data.size))
    log(f"dspike: epoch {epoch + 1} b={st.dspike_b:g} cos={cos[st.dspike_b]:.3f} (b:cos "
        f"{cands}; FDG of {n_fdg} first-layer weights, {time.perf_counter() - t0:.1f}s)")
    return cos[st.dspike_b]


def _train_batches(st: TrainState, epoch: int, T: int,
                   batches: Iterator[tuple[Any, Any]]) -> _EpochStats:
    """Train on every batch of the epoch (with a progress bar); the running sums."""
    encoder = make_encoder(st.cfg, epoch)
    stats = _EpochStats(len(st.layer_names))
    every = GPU_READ_EVERY if st.be.name == "gpu" else 1
    bar = tqdm(total=st.n_batches, desc=f"epoch {epoch + 1}/{st.total}", leave=False,
               disable=st.cfg.no_progress, file=sys.stderr, dynamic_ncols=True)
    b = -1
    try:
        for b, (xd, yd) in enumerate(batches):
            stats.add(train_step(st, xd, yd, T, encoder, epoch=epoch, batch=b), yd, st.spiking)
            bar.update(1)
            if stats.unread >= every:
                _read_stats(st, stats, epoch, b, T, bar)
        if stats.unread:
            _read_stats(st, stats, epoch, b, T, bar)
    finally:
        bar.close()
    return stats


def _read_stats(st: TrainState, stats: _EpochStats, epoch: int, b: int, T: int,
                bar: Any) -> None:
    """The read-out: the running sums to the host, the NaN check of the losses read (batches
    ``b - unread + 1 .. b``), the progress bar's figures."""
    b0 = b - stats.unread + 1
    loss = stats.read()
    if not math.isfinite(loss):
        raise non_finite_loss(st, loss, epoch, b0, b, T)
    if stats.bad_weights:  # the GPU's weight check, read with the sums (the CPU's: per step)
        raise weights_error(st, epoch, b0, b, T)
    bar.set_postfix(loss=f"{stats.loss_sum / stats.seen:.4f}",
                    acc=f"{stats.correct / stats.seen:.3f}", refresh=False)


def _epoch_record(st: TrainState, epoch: int, stage: int, T: int, stats: _EpochStats,
                  ev: dict[str, float], dspike_cos: float | None,
                  epoch_s: float) -> dict[str, Any]:
    """The epoch's line of metrics.jsonl."""
    seen = max(stats.seen, 1)
    rates = stats.rate_sum / seen
    rec = {"epoch": epoch + 1, "stage": stage + 1, "T": T, "lr": st.opt.lr,
           "loss": stats.loss_sum / seen, "train_acc": stats.correct / seen,
           "test_loss": ev["loss"], "test_acc": ev["acc"],
           "firing_rate": float(rates.mean()) if len(rates) else 0.0,
           "firing_rates": {k: float(r) for k, r in zip(st.layer_names, rates, strict=True)},
           "forward_s": stats.t_fwd, "backward_s": stats.t_bwd, "epoch_s": epoch_s}
    if st.dspike_b is not None:
        rec.update(dspike_b=st.dspike_b, dspike_cos=dspike_cos)
    if st.cfg.method == "asf":
        rec["asf_S"] = [float(n.S) for n in nn_.spiking_layers(st.net)]
    return rec


def _checkpoint_meta(st: TrainState, epoch: int, T: int, test_acc: float) -> dict[str, Any]:
    return {"epoch": epoch, "T": T, "test_acc": test_acc, "best_acc": st.best_acc,
            "best_epoch": st.best_epoch, "dspike_b": st.dspike_b,
            "neurons": neuron_state(st.net), "config": st.cfg.to_dict()}


def _evaluate(st: TrainState, T: int, loss: bool = True) -> dict[str, float]:
    """Test accuracy (and loss) of the network with the run's evaluation encoder."""
    cfg = st.cfg
    return evaluate_model(st.net, st.method, st.data.x_test, st.data.y_test, T=T,
                          encoder=make_encoder(cfg, None), batch_size=cfg.batch_size,
                          device=cfg.device, dtype=st.dtype,
                          loss_forward=st.loss_fwd if loss else None,
                          max_batches=cfg.max_eval_batches)


def run_epoch(st: TrainState, epoch: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Train one epoch (0-based ``epoch``), evaluate, append to metrics.jsonl, write
    last.npz (and best.npz on a new best), log the epoch's line.  Returns the record."""
    stage, T = _begin_epoch(st, epoch, log)
    st.net.train()
    t_epoch = time.perf_counter()
    batches = _device_batches(st, epoch)
    dspike_cos = None
    if st.cfg.dspike_adapt:  # on the epoch's first batch, which is then trained on as usual
        first = next(batches)
        dspike_cos = _dspike_epoch(st, epoch, T, first, log)
        batches = itertools.chain([first], batches)
    stats = _train_batches(st, epoch, T, batches)
    distributed.end_epoch(st.comm, stats, st.net)  # metric sums, BN running stats over ranks
    if st.comm.rank != 0:  # --distributed: only rank 0 evaluates, writes and logs
        return {"epoch": epoch + 1, "test_acc": float("nan")}
    ev = _evaluate(st, T)
    st.net.train()
    rec = _epoch_record(st, epoch, stage, T, stats, ev, dspike_cos,
                        time.perf_counter() - t_epoch)
    runlog.append_metrics(st.run_dir, rec)
    st.history.append(rec)
    if ev["acc"] > st.best_acc:
        st.best_acc, st.best_epoch = ev["acc"], epoch + 1
        save_checkpoint(st.run_dir / "best.npz", st.net, st.opt,
                        _checkpoint_meta(st, epoch + 1, T, ev["acc"]))
    save_checkpoint(st.run_dir / "last.npz", st.net, st.opt,
                    _checkpoint_meta(st, epoch + 1, T, ev["acc"]))
    log(runlog.epoch_line(rec, st.total))
    return rec


# ================================================================================================
# the whole run
# ================================================================================================

def train(cfg: RunConfig | dict[str, Any], *, resume: str | Path | None = None,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the training described by ``cfg``: a :class:`~pysnn_ref.train.config.RunConfig`
    (:func:`pysnn_ref.train.__main__.resolve_config`) or a dict of its fields (validated the
    same way).

    ``resume``: a checkpoint to continue from (``cfg`` is then the checkpoint's configuration
    with the allowed overrides applied).  Returns a summary: ``test_acc`` (final epoch),
    ``best_test_acc``, ``best_epoch``, ``run_dir``, ``epochs``, ``history``.

    Raises ``ValueError`` / ``GPUUnavailableError`` / ``DataError`` for bad input and
    :class:`~pysnn_ref.cli.NonFiniteLossError` when the loss or a weight becomes NaN or
    infinite.  NumPy's overflow / invalid-value warnings are silenced during the run: the
    values they warn about are caught by those checks (exit 3, one line), not printed raw.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(as_run_config(cfg), resume, log)


def _train(cfg: RunConfig, resume: str | Path | None,
           log: Callable[[str], None] | None) -> dict[str, Any]:
    """:func:`train` under ``np.errstate``."""
    if cfg.device == "cpu" and cfg.blas_threads > 0:
        backend.set_blas_threads(cfg.blas_threads)
    log = log or (lambda s: print(s, flush=True))
    comm = distributed.init(bool(cfg.distributed))
    if cfg.device == "gpu" and comm.size > 1:
        backend.select_gpu(comm.local_rank)  # one GPU per rank on each machine
    st = setup_run(cfg, resume)
    if comm.size > 1:
        _join_world(st, comm)
        if comm.rank != 0:
            with abort_world_on_error(comm):
                return _train_silent(st)
    lock = None
    try:
        st.run_dir, st.history, lock = runlog.open_run_dir(st.cfg, resume, st.start_epoch, log)
        st.cfg = runlog.write_config(st.run_dir, st.cfg.replace(out=str(st.run_dir)),
                                     repr(st.net), st.n_params)
    except BaseException:
        if lock is not None:
            lock.release()
        comm.min_int(0)  # tell the other ranks (they wait for the run folder) to stop too
        raise
    comm.min_int(1)
    with lock, abort_world_on_error(comm):  # the run folder's one writer until the run ends
        return _train_epochs(st, resume, log)


def _train_epochs(st: TrainState, resume: str | Path | None,
                  log: Callable[[str], None]) -> dict[str, Any]:
    """Rank 0's part of :func:`train` once the run folder is open: the epochs, the energy
    estimate, the closing lines."""
    cfg = st.cfg
    runlog.log_header(log, cfg, st.data.input_shape, st.n_params, len(st.layer_names),
                      st.total, st.method.describe())
    if cfg.device == "cpu" and not backend.cpu_kernels_cached():
        log("note: first run: Numba compiles the CPU kernels during the first steps (about "
            "half a minute, once; cached for later runs)")
    if resume is not None:
        log(f"resumed from {resume} at epoch {st.start_epoch}/{st.total}")
    last_acc = None
    for epoch in range(st.start_epoch, st.total):
        last_acc = run_epoch(st, epoch, log)["test_acc"]
    if last_acc is None:  # nothing left to train: report the checkpoint's network
        log(f"nothing to train: the checkpoint is at epoch {st.start_epoch} of {st.total}")
        last_acc = _evaluate(st, _stage_of(st.stages, st.total - 1)[1], loss=False)["acc"]
    energy = _energy_summary(st, log)
    runlog.finish_log(log, st.run_dir, cfg, st.history, st.best_acc, st.best_epoch, last_acc)
    return {"test_acc": last_acc, "best_test_acc": st.best_acc, "best_epoch": st.best_epoch,
            "run_dir": str(st.run_dir), "epochs": st.total, "history": st.history,
            "energy": energy}


def _energy_summary(st: TrainState, log: Callable[[str], None]) -> dict[str, Any]:
    """The final network's energy estimate (:mod:`pysnn_ref.energy`) on the first test batch:
    one log line, and ``energy.json`` in the run folder."""

    T = _stage_of(st.stages, st.total - 1)[1]
    xb = st.be.asarray(st.data.x_test[: st.cfg.batch_size], dtype=st.dtype)
    rep = estimate_energy(st.net, xb, T, make_encoder(st.cfg, None))
    log(rep.summary_line())
    runlog.write_energy(st.run_dir, rep.to_dict())
    return rep.to_dict()


def _join_world(st: TrainState, comm: distributed.LocalComm) -> None:
    """``--distributed`` on more than one rank: refuse what cannot be sharded, give every rank
    rank 0's weights (:mod:`pysnn_ref.train.distributed`).  Every rank checks the same things."""
    cfg, W = st.cfg, comm.size
    if cfg.dspike_adapt:
        raise ValueError("--dspike-adapt does not combine with --distributed on more than one "
                         "rank (each rank would adapt the temperature on its own shard)")
    B, n = cfg.batch_size, cfg.n_train
    last = n % B if st.n_batches == math.ceil(n / B) else 0
    if B < W or 0 < last < W:
        raise ValueError(f"--batch-size {B}: every global batch needs at least one sample per "
                         f"rank ({W} ranks), but {n} training samples leave a last batch of "
                         f"{last or B}; choose another --batch-size or --max-batches")
    st.comm = comm
    st.cfg = cfg.replace(world_size=W)
    distributed.broadcast_parameters(comm, st.net.parameters())


def _train_silent(st: TrainState) -> dict[str, Any]:
    """Ranks > 0 of a ``--distributed`` run: every epoch in step with rank 0 (the same
    all-reduces), nothing written, nothing logged."""
    if not st.comm.min_int(1):
        raise ValueError("rank 0 could not open the run folder (see its error)")
    st.cfg = st.cfg.replace(no_progress=True)
    for epoch in range(st.start_epoch, st.total):
        run_epoch(st, epoch, lambda s: None)
    return {"test_acc": float("nan"), "best_test_acc": float("nan"), "best_epoch": 0,
            "run_dir": None, "epochs": st.total, "history": []}
