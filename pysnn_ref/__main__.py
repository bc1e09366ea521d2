"""``python -m pysnn_ref``: what the package offers -- its command lines and its subsystems."""

from __future__ import annotations

import sys

from . import __version__

COMMANDS = (
    ("train", "train a spiking network (BPTT, ASF, SSF; TET, Dspike, TIT; --distributed)"),
    ("evaluate", "test accuracy and loss of a training run's checkpoint"),
    ("gradcheck", "every hand-written backward against finite differences (float64)"),
    ("bench", "step time and memory per method and T (--vs-torch, --workers, --kernel-times)"),
    ("bench.kernels", "the fused LIF + pooling and convolution kernels alone"),
    ("energy", "energy estimate of a model (45 nm MAC / AC counts) vs the same ANN"),
    ("ecml", "the ECML paper's Table 1 and complexity figures"),
)

LAYOUT = (
    ("errors, _check, parameter", "leaves: the exception types, input checks, Parameter"),
    ("kernels/", "reference loops (the teaching text), cpu/ (Numba), cuda (numba.cuda)"),
    ("backend", "the device seam: NumPy + Numba kernels or CuPy + CUDA kernels"),
    ("functional/", "(out, cache) = f_forward(...); grads = f_backward(dout, cache)"),
    ("nn/", "Module (forward hooks), weight layers, norm, pool, neurons, containers"),
    ("methods/, models, optim", "BPTT / ASF / SSF / DSR / rate-BP / OTTT / SLTT; the model zoo; "
                                "SGD, Adam, schedules"),
    ("data/", "datasets, event data, mini-batches, spike encoders"),
    ("energy/, ecml", "energy counting; the ECML complexity tables"),
    ("train/", "CLI, loop, config, checkpoint, run log, schema, lock, plots, evaluate, Dspike, "
                "MPI"),
    ("gradcheck/", "finite differences, layer / neuron / network cases, FDG cosine"),
    ("bench/", "CLI, measurement, report, kernel timings, MPI worker, PyTorch baseline"),
)


def main() -> int:
    """Print the commands and the package layout; exit 0."""
    print(f"pysnn_ref {__version__}: training spiking neural networks from scratch\n")
    print("commands (python -m pysnn_ref.<name> --help for their flags):")
    for name, what in COMMANDS:
        print(f"  {name:<15} {what}")
    print("\npackage layout (imports run downwards: CLIs -> train/bench -> methods/models -> nn"
          " -> functional -> backend -> kernels):")
    for name, what in LAYOUT:
        print(f"  {name:<27} {what}")
    print("\nguides: README.md, docs/, tutorials/ (chapters 01-23); the site of all three: "
          "python -m sphinx docs docs/_build/html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
