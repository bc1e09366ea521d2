"""``python -m pysnn_ref.energy``: the energy estimate (:mod:`pysnn_ref.energy`) of a model --
untrained, or a training run's checkpoint -- on test samples, as a table (and ``--json``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import nn as nn_
from .._check import check_int
from ..cli import ArgumentParser, int_in, nonnegative_int, run_main
from ..data import DATASETS, ENCODERS, check_encoder, load_dataset, make_encoder
from ..models import MODELS
from ..train.__main__ import build_parser as train_parser
from ..train.__main__ import resolve_config
from ..train.checkpoint import load
from ..train.config import build_model
from ..train.flags import MAX_BATCH, MAX_T
from . import estimate_energy, format_table


def make_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m pysnn_ref.energy",
                       description="Energy estimate (45 nm: 4.6 pJ/MAC, 0.9 pJ/AC) of a model from "
                                   "a real forward pass on test samples, vs the same ANN.")
    p.add_argument("--model", choices=MODELS, default="mlp", help="network (untrained unless "
                   "--checkpoint)")
    p.add_argument("--T", type=int_in(1, MAX_T), default=4, help="time steps")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="data for the inputs")
    p.add_argument("--data-dir", default=None, help="folder of the dataset's files")
    p.add_argument("--encoder", choices=ENCODERS, default="direct", help="input encoder")
    p.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=64,
                   help="test samples counted")
    p.add_argument("--checkpoint", default=None, help="a run folder (best.npz) or checkpoint "
                   "file: count the trained network (its model, dataset and T unless given)")
    p.add_argument("--json", default=None, help="also write the report as JSON here")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="weight seed of an untrained model")
    return p


def _network(args: argparse.Namespace, argv: Sequence[str]
             ) -> tuple[nn_.Module, Any, int, str]:
    """The network, the data, T and the encoder name (a checkpoint's own unless given)."""
    if args.checkpoint is not None:
        net, cfg = load(args.checkpoint)
        given = {a.split("=")[0] for a in argv if a.startswith("--")}
        if "--model" in given and args.model != cfg["model"]:
            raise ValueError(f"--model {args.model} differs from the checkpoint's {cfg['model']}")
        dataset = args.dataset if "--dataset" in given else cfg["dataset"]
        data_dir = args.data_dir if "--data-dir" in given else cfg.get("data_dir")
        T = args.T if "--T" in given else int(cfg["checkpoint"]["T"])
        encoder = args.encoder if "--encoder" in given else cfg["encoder"]
        return net, load_dataset(dataset, data_dir, seed=0), T, encoder
    data = load_dataset(args.dataset, args.data_dir, seed=0)
    # the network python -m pysnn_ref.train --model M --seed S would train (its defaults)
    targv = ["--model", args.model, "--seed", str(args.seed)]
    cfg = resolve_config(train_parser().parse_args(targv), {"model", "seed"})
    return build_model(cfg, data.input_shape, data.num_classes), data, args.T, args.encoder


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pysnn_ref.energy``: the table (and ``--json``) of a model's energy estimate."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = make_parser().parse_args(argv)
    check_int("T", args.T, minimum=1)
    check_int("batch_size", args.batch_size, minimum=1)
    check_int("seed", args.seed, minimum=0)
    net, data, T, encoder = _network(args, argv)
    check_encoder(data.name, encoder)  # nmnist: events; digits-rows: sequence
    x = np.ascontiguousarray(data.x_test[: args.batch_size], dtype=np.float32)
    rep = estimate_energy(net, x, T, make_encoder(encoder, seed=args.seed))
    if args.checkpoint is None:   # spike counts of random weights: say so, they are not typical
        print(f"note: untrained {args.model} (weight seed {args.seed}); give --checkpoint RUN_DIR "
              "for a trained network's spike counts", file=sys.stderr)
    print(format_table(rep))
    if args.json:
        Path(args.json).write_text(json.dumps(rep.to_dict(), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def cli() -> None:
    """:func:`main` with the CLI's error handling (one line on stderr, exit 2)."""
    sys.exit(run_main(main, "python -m pysnn_ref.energy"))


if __name__ == "__main__":
    cli()
