"""No device->host transfer inside a GPU training step; one per read-out.

Under numba's CUDA simulator with the NumPy-backed CuPy stand-in of ``tests/fakecupy`` (which
counts every ``.get()``, ``asnumpy``, ``float()``, ``int()``, ``bool()``, ``item()`` ... of its
arrays), the driver in this file (``python tests/test_gpu_transfers.py OUT``, run in a
subprocess because both must be set before numba and cupy are imported) trains a few batches
with ``trainer.train_step`` for BPTT, ASF (both scale-factor variants) and SSF, the three
losses, with and without BatchNorm, and records the transfers of every step, of every
``_EpochStats.add`` and of the read-out.  A ``float(loss)`` (or any other read) added to the
step makes :func:`test_no_transfer_inside_a_gpu_step` fail, and
:func:`test_counter_sees_a_read_in_the_step` proves that the counter would see it.

The ``T20-*`` cases (issue 22) stream five time chunks through the layer types of the
benchmarks' networks (convolution + BN, average and max pooling, a hidden FC layer) with several
chunks of images per convolution: the per-chunk paths that T = 2 never takes.  The stand-in
counts every call that synchronises in CuPy (``shares_memory`` among them): before issue 22 the
static-input check of the flow methods made 12 such reads per ASF/SSF step here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fakecupy"
BASE = ["--device", "gpu", "--T", "2", "--batch-size", "2", "--max-batches", "3",
        "--no-progress", "--seed", "2"]
#: name -> (train CLI argv, replace the model by this spec with BatchNorm, or None)
TINY_BN = "4C3-AP2"
#: several time chunks (T = 20 is five chunks of methods.DEFAULT_TIME_CHUNK = 4 steps) through
#: convolution + BN, average and max pooling and a hidden FC layer: the layer types of the
#: benchmarks' networks, with the size thresholds lowered in the driver (:func:`_big_paths`)
#: so that every size-dependent branch is taken at these sizes
BIG = "2C3-AP2-4C3-MP2-FC8"
T20 = ["--T", "20"]
CASES = {
    "bptt-sdt": (["--method", "bptt"], None),
    "bptt-tet-bn": (["--method", "bptt", "--loss", "tet"], TINY_BN),
    "asf-paper-mse": (["--method", "asf", "--loss", "asf-mse"], None),
    "asf-code-bn": (["--method", "asf", "--asf-variant", "code"], TINY_BN),
    "ssf-sdt-bn": (["--method", "ssf"], TINY_BN),
    "ssf-tet-f64": (["--method", "ssf", "--loss", "tet", "--dtype", "float64"], None),
    "T20-bptt-bn": (["--method", "bptt", *T20], BIG),
    "T20-asf-bn": (["--method", "asf", *T20], BIG),
    "T20-ssf-bn": (["--method", "ssf", *T20], BIG),
    # a spike input that differs per step (Poisson, cuRAND on a GPU): two time chunks
    "T8-ssf-poisson-bn": (["--method", "ssf", "--encoder", "poisson", "--T", "8"], BIG),
}


# ------------------------------------------------------------------------------------------
# the driver (runs in the subprocess)
# ------------------------------------------------------------------------------------------

def _big_paths() -> None:
    """Lower the size threshold so that the small test layers take the branch that the
    benchmarks' large layers take: several chunks of images per convolution, forward and
    backward (``conv.GPU_CHUNK_BYTES``; the other size-dependent choice, the block size of
    ``kernels.cuda.launch_config``, is host arithmetic that cannot read the device)."""
    from pysnn_ref.functional import conv

    conv.GPU_CHUNK_BYTES = 9216  # 4 images of the first layer per chunk


def _setup(argv: list[str], spec: str | None):
    from pysnn_ref import models
    from pysnn_ref.train import __main__ as tr
    from pysnn_ref.train import config as runconfig
    from pysnn_ref.train import loop as trainer

    trainer.build_model = runconfig.build_model
    if spec:  # conv -> BN -> LIF -> pool ... -> classifier: BatchNorm statistics on the device
        def tiny(cfg, input_shape, num_classes):
            import numpy as np

            from pysnn_ref import nn

            return models.build_from_string(
                spec, tuple(input_shape), num_classes,
                lambda: nn.LIF(cfg.lam, cfg.v_th, cfg.reset, cfg.surrogate),
                batch_norm=True, seed=cfg.seed, dtype=np.dtype(cfg.dtype))

        trainer.build_model = tiny
    args = tr.build_parser().parse_args(argv)
    st = trainer.setup_run(tr.resolve_config(args, tr.explicit_args(argv)))
    st.method.begin_epoch(st.net, 0)
    st.net.train()
    return st


def _steps(argv: list[str], spec: str | None, read_in_step: bool = False) -> dict:
    """Per-step transfers of train_step and of _EpochStats.add, then of the read-out."""
    import cupy

    from pysnn_ref.train import loop as trainer

    st = _setup(argv, spec)
    if read_in_step:  # what the test must catch: a float(loss) inside the step
        fwd = st.loss_fwd
        st.loss_fwd = lambda y, labels: (lambda r: (float(r[0]), r[1]))(fwd(y, labels))
    enc = trainer.make_encoder(st.cfg, 0)
    stats = trainer._EpochStats(len(st.layer_names))
    step, add, where = [], [], []
    for b, (xd, yd) in enumerate(trainer._device_batches(st, 0)):
        assert type(xd).__module__ == "cupy"
        cupy.reset_transfers()
        r = trainer.train_step(st, xd, yd, st.cfg.T, enc, epoch=0, batch=b)
        step.append(cupy.transfers())
        where += cupy.transfer_log()
        cupy.reset_transfers()
        stats.add(r, yd, st.spiking)
        add.append(cupy.transfers())
        where += cupy.transfer_log()
    cupy.reset_transfers()
    loss = stats.read()
    return {"step": step, "add": add, "read": cupy.transfers(), "where": where,
            "loss": loss, "seen": stats.seen, "rates": stats.rate_sum.tolist(),
            "correct": stats.correct}


def _epoch_reads(argv: list[str], every: int) -> dict:
    """_train_batches over 3 batches with a read every ``every`` batches."""
    import cupy

    from pysnn_ref.train import loop as trainer

    st = _setup(argv, None)
    trainer.GPU_READ_EVERY = every
    cupy.reset_transfers()
    stats = trainer._train_batches(st, 0, st.cfg.T, trainer._device_batches(st, 0))
    return {"transfers": cupy.transfers(), "where": cupy.transfer_log(), "seen": stats.seen,
            "loss": stats.loss_sum}


def _nan_at_read(argv: list[str]) -> dict:
    """A NaN loss in batch 2 of 3 on the device: found at the read-out after batch 2."""
    from pysnn_ref.errors import NonFiniteLossError
    from pysnn_ref.train import loop as trainer

    st = _setup(argv, None)
    trainer.GPU_READ_EVERY = 2
    fwd, calls = st.loss_fwd, []

    def nan_second(y, labels):
        calls.append(1)
        loss, cache = fwd(y, labels)
        return (loss * float("nan") if len(calls) == 2 else loss), cache

    st.loss_fwd = nan_second
    try:
        trainer._train_batches(st, 0, st.cfg.T, trainer._device_batches(st, 0))
    except NonFiniteLossError as e:
        return {"error": str(e), "steps": len(calls)}
    return {"error": None, "steps": len(calls)}


def _drive(out: Path) -> None:
    _big_paths()
    import time

    res = {}
    for name, (argv, spec) in CASES.items():
        t0 = time.perf_counter()
        res[name] = _steps(["--model", "mlp", *BASE, *argv], spec)
        res[name]["seconds"] = time.perf_counter() - t0
    res["read-in-step"] = _steps(["--model", "mlp", *BASE, "--method", "bptt"], None, True)
    res["epoch-every-2"] = _epoch_reads(["--model", "mlp", *BASE, "--method", "ssf"], 2)
    res["nan"] = _nan_at_read(["--model", "mlp", *BASE, "--method", "bptt"])
    out.write_text(json.dumps(res, indent=1))


# ------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def counts(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_transfers") / "counts.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYSNN_CUDA_MAX_BLOCKS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE), str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, __file__, str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    if "numba.cuda cannot be imported" in log or "No module named 'numba.cuda" in log:
        pytest.skip("numba.cuda cannot be imported here: pip install numba-cuda")
    assert proc.returncode == 0, log[-4000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_no_transfer_inside_a_gpu_step(counts, case):
    c = counts[case]
    B = 2
    assert len(c["step"]) == 3 and c["seen"] == 3 * B
    assert c["step"] == [0, 0, 0], c["where"]       # train_step: forward, loss, backward, step
    assert c["add"] == [0, 0, 0], c["where"]        # the running sums stay on the device
    assert c["read"] == 1                           # the read-out: one transfer for all sums
    assert c["loss"] > 0 and 0 <= c["correct"] <= 3 * B
    assert c["rates"] and all(0.0 <= r <= 3.0 * B for r in c["rates"])


def test_counter_sees_a_read_in_the_step(counts):
    c = counts["read-in-step"]
    assert c["step"] == [1, 1, 1]
    assert all("float(ndarray)" in w and "test_gpu_transfers.py" in w for w in c["where"])


def test_epoch_reads_every_k_batches_and_at_the_end(counts):
    c = counts["epoch-every-2"]          # 3 batches, a read after batch 2 and at the end
    assert c["seen"] == 6 and c["loss"] > 0
    assert c["transfers"] == 2, c["where"]


def test_nan_on_the_device_is_found_at_the_read_out(counts):
    c = counts["nan"]
    assert c["steps"] == 2               # stopped at the read-out after batch 2, not later
    e = c["error"]
    assert e and "loss became nan at epoch 1, one of batches 1-2 (of 3" in e
    assert "no checkpoint was written" in e and "lower --lr" in e


if __name__ == "__main__":
    _drive(Path(sys.argv[1]))
