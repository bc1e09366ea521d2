"""Test accuracy of a saved run: ``python -m pysnn_ref.evaluate RUN_DIR [flags]``.

Rebuilds the network from a checkpoint of :mod:`pysnn_ref.train`
(:func:`pysnn_ref.train.checkpoint.load`), reloads the run's dataset (same test split), switches the
network to eval mode (BatchNorm uses its running statistics) and reports the test accuracy at
the checkpoint's ``T``.  Evaluation is deterministic (a Poisson encoder is seeded exactly as
during training), so on the device the run was trained on it reproduces the ``test_acc``
recorded for that epoch.

The last line printed is ``test_acc=0.XXXX``.  Exit codes as for training: 2 for bad input
(one line on stderr).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend
from .. import nn as nn_
from ..cli import ArgumentParser, positive_int, run_main
from ..data import iterate_minibatches, load_dataset
from ..functional import loss as L
from ..methods import Method
from .checkpoint import load_run
from .config import SPLIT_SEED, build_method, loss_functions, make_encoder
from .runlog import energy_line, read_energy

__all__ = ["PROG", "evaluate_model", "build_parser", "main", "cli"]

PROG = "python -m pysnn_ref.evaluate"


def evaluate_model(net: nn_.Module, method: Method, x: np.ndarray, y: np.ndarray, *, T: int,
                   encoder: Any, batch_size: int, device: str = "cpu", dtype: Any = np.float32,
                   loss_forward: Callable | None = None,
                   max_batches: int | None = None) -> dict[str, float]:
    """Test accuracy (and mean loss) of ``net`` in eval mode (BatchNorm running statistics).

    The batches go in order, without shuffling; ``encoder`` should be fresh (seeded) so that a
    Poisson evaluation is the same every time.  The network is left in eval mode.  The correct
    counts and losses are summed where they are computed and read once, at the end.
    """
    be = backend.get_backend(device)
    net.eval()
    correct, n, loss_sum = 0, 0, 0.0
    for b, (xb, yb) in enumerate(iterate_minibatches(x, y, batch_size, shuffle=False)):
        if max_batches is not None and b >= max_batches:
            break
        xd, yd = be.asarray(xb, dtype=dtype), be.asarray(yb)
        out = method.forward(net, xd, T, encoder)
        correct = correct + (L.predict(out) == yd).sum()
        if loss_forward is not None:
            loss_sum = loss_sum + backend.as_scalar(loss_forward(out, yd)[0]) * len(yb)
        n += len(yb)
    correct, loss_sum = backend.host_scalars([correct, loss_sum])
    return {"acc": int(round(correct)) / max(n, 1), "loss": float(loss_sum) / max(n, 1), "n": n}


def build_parser() -> ArgumentParser:
    """The ``python -m pysnn_ref.evaluate`` argument parser."""
    p = ArgumentParser(
        prog=PROG,
        description="Report the test accuracy of a network saved by python -m pysnn_ref.train.")
    p.add_argument("run", metavar="RUN_DIR",
                   help="a run folder (with best.npz / last.npz) or a checkpoint .npz file")
    p.add_argument("--checkpoint", choices=("best", "last"), default="last",
                   help="which checkpoint of a run folder: last (the final epoch; the number "
                        "train printed last) or best (highest test accuracy during training -- "
                        "chosen on the test set, so an optimistic estimate)")
    p.add_argument("--device", choices=backend.DEVICES, default="cpu",
                   help="cpu or gpu")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="evaluation batch size (default: the run's --batch-size)")
    p.add_argument("--T", type=positive_int, default=None,
                   help="time steps (default: the T the checkpoint was trained with)")
    p.add_argument("--data-dir", default=None,
                   help="where the dataset files are now (default: the run's --data-dir)")
    p.add_argument("--max-eval-batches", type=positive_int, default=None,
                   help="test on at most N mini-batches (default: the run's setting, normally all)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate a run's checkpoint on its test set; errors propagate (see :func:`cli`)."""
    args = build_parser().parse_args(argv)
    net, cfg, ck = load_run(args.run, device=args.device, checkpoint=args.checkpoint)
    if args.data_dir is not None and cfg.dataset in ("digits", "digits-rows"):
        raise ValueError(f"--data-dir only applies to runs on datasets read from files; this run "
                         f"used the built-in {cfg.dataset!r}")
    T = args.T or ck["T"]
    cfg = cfg.replace(T=T, batch_size=args.batch_size or cfg.batch_size)   # validated
    data_dir = args.data_dir if args.data_dir is not None else cfg.data_dir
    data = load_dataset(cfg.dataset, data_dir, seed=SPLIT_SEED)
    max_batches = (args.max_eval_batches if args.max_eval_batches is not None
                   else cfg.max_eval_batches)
    loss_fwd, _ = loss_functions(cfg)
    res = evaluate_model(net, build_method(cfg), data.x_test, data.y_test, T=T,
                         encoder=make_encoder(cfg, None),
                         batch_size=cfg.batch_size, device=args.device,
                         dtype=np.dtype(cfg.dtype), loss_forward=loss_fwd,
                         max_batches=max_batches)
    print(f"{ck['path']}: epoch {ck['epoch']}, {cfg.model} / {cfg.method} on "
          f"{cfg.dataset}, T={T}, {res['n']} test samples, {args.device}; test loss "
          f"{res['loss']:.4f} (recorded test_acc at that epoch: {ck['test_acc']:.4f})")
    run_dir = Path(ck["path"]).parent
    energy = read_energy(run_dir)   # checked against its schema (docs/reliability.md)
    if energy is not None:
        print(energy_line(energy, run_dir / "energy.json"))
    print(f"test_acc={res['acc']:.4f}")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """``main`` with the CLI's error handling: one line on stderr and exit 2 for bad input."""
    return run_main(main, PROG, argv)

