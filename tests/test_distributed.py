"""Data-parallel training over MPI (pysnn_ref.train.distributed, train --distributed).

The 2-rank tests start ``mpiexec -n 2`` (the ``mpich`` wheel, a dev dependency) and compare
the weights with a one-process run on the same global batches: a BN-free MLP in float64 with
direct encoding, where sharding changes nothing but the order of the gradient sums.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref.parameter import Parameter
from pysnn_ref.train import distributed as D
from pysnn_ref.train.__main__ import cli


def _mpiexec() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None,
                               reason="mpi4py / mpiexec not installed (pip install -e '.[mpi]')")


# ---- units -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, size", [(64, 2), (33, 2), (7, 3), (5, 5), (100, 7)])
def test_shards_cover_the_global_batch_in_order(n, size):
    parts = [D.shard_slice(n, r, size) for r in range(size)]
    idx = np.concatenate([np.arange(n)[p] for p in parts])
    assert np.array_equal(idx, np.arange(n))
    lens = [p.stop - p.start for p in parts]
    assert max(lens) - min(lens) <= 1


def test_shard_slice_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        D.shard_slice(10, 2, 2)


def test_pack_unpack_round_trip_with_scale_and_extras():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in [(3, 4), (5,), (2, 1, 3)]]
    buf = D.pack(arrays, extra=(7.0, 2.0), scale=3.0)
    assert buf.shape == (12 + 5 + 6 + 2,) and buf.flags.c_contiguous
    assert np.allclose(buf[:12], 3 * arrays[0].ravel())
    out = [np.zeros_like(a) for a in arrays]
    extra = D.unpack(buf, out, scale=0.5)
    for a, b in zip(arrays, out, strict=True):
        assert np.allclose(b, 1.5 * a)
    assert np.allclose(extra, [3.5, 1.0])


class _SumWith(D.LocalComm):
    """A stand-in for rank 0 of 2: the sum adds what the other rank contributes."""

    size = 2

    def __init__(self, other):
        self.other = other

    def sum_(self, buf):
        buf += self.other
        return buf


def test_allreduce_weights_unequal_shards_by_count():
    """Mean-loss gradients of shards of 1 and 3 samples -> the mean over the 4 samples."""
    rng = np.random.default_rng(1)
    per_sample = rng.standard_normal((4, 6))          # the gradient of each sample's loss
    losses = rng.random(4)
    g0, g1 = per_sample[:1].mean(0), per_sample[1:].mean(0)
    other = D.pack([g1], extra=(losses[1:].mean() * 3, 3.0), scale=3.0)
    p = Parameter("W", np.zeros(6))
    p.grad[...] = g0
    loss, N = D.allreduce_gradients(_SumWith(other), [p], float(losses[:1].mean()), 1)
    assert N == 4
    assert np.allclose(p.grad, per_sample.mean(0), rtol=0, atol=1e-14)
    assert loss == pytest.approx(losses.mean(), abs=1e-14)


def test_one_rank_leaves_gradients_bit_for_bit():
    p = Parameter("W", np.zeros(3))
    p.grad[...] = [0.1, 0.2, 0.3]
    assert D.allreduce_gradients(D.LocalComm(), [p], 0.5, 7) == (0.5, 7)
    assert list(p.grad) == [0.1, 0.2, 0.3]


def test_distributed_without_mpi4py_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "mpi4py", None)   # import mpi4py -> ImportError
    rc = cli(["--distributed", "--epochs", "1", "--max-batches", "1", "--no-plots",
              "--no-progress", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "mpi4py" in err
    assert not (tmp_path / "r").exists()


# ---- 2 ranks against 1 process ------------------------------------------------------------------

def _train(cwd: Path, out: str, args: list[str], ranks: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pysnn_ref.train", *args, "--out", out]
    if ranks:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd, "--distributed"]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@needs_mpi
@pytest.mark.parametrize("method, batch", [("bptt", 33), ("ssf", 32)])
def test_two_ranks_reach_the_one_process_weights(tmp_path, method, batch):
    """batch 33 gives shards of 16 and 17 samples: the count weighting is exercised."""
    args = ["--method", method, "--epochs", "2", "--max-batches", "3", "--max-eval-batches",
            "1", "--batch-size", str(batch), "--dtype", "float64", "--seed", "3",
            "--no-plots", "--no-progress"]
    one = _train(tmp_path, "one", args, 0)
    two = _train(tmp_path, "two", args, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    a, b = np.load(tmp_path / "one" / "last.npz"), np.load(tmp_path / "two" / "last.npz")
    weights = [k for k in a.files if k.startswith("model/")]
    assert weights
    for k in weights:
        assert np.allclose(a[k], b[k], rtol=0, atol=1e-12), k
    # only rank 0 logs: the same number of lines as one process, the same last line
    assert len(two.stdout.splitlines()) == len(one.stdout.splitlines())
    assert two.stdout.splitlines()[-1] == one.stdout.splitlines()[-1]
    m1 = (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    m2 = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(m1) == len(m2) == 2
    r1, r2 = json.loads(m1[-1]), json.loads(m2[-1])
    assert r2["loss"] == pytest.approx(r1["loss"], abs=1e-12)   # metric sums over both ranks
    assert r2["train_acc"] == r1["train_acc"]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2


@needs_mpi
def test_bench_workers_reports_speedup_per_method(tmp_path):
    out = tmp_path / "w.json"
    r = subprocess.run([sys.executable, "-m", "pysnn_ref.bench", "--model", "mlp", "--workers",
                        "1,2", "--methods", "bptt,ssf", "--T", "2", "--batch-size", "8",
                        "--repeats", "1", "--warmup", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [s for s in r.stdout.splitlines() if s.startswith("| bptt") or s.startswith("| ssf")]
    assert len(rows) == 4
    recs = json.loads(out.read_text())
    assert sorted((x["method"], x["workers"]) for x in recs) == [
        ("bptt", 1), ("bptt", 2), ("ssf", 1), ("ssf", 2)]
    for x in recs:
        assert x["step_s"] > 0 and x["speedup"] > 0
        assert (x["speedup"] == 1.0) == (x["workers"] == 1)


# ---- one GPU per rank (issue 22) ---------------------------------------------------------------

def test_each_rank_on_a_machine_gets_its_own_gpu():
    from pysnn_ref import backend

    assert [backend.gpu_for_rank(r, 4) for r in range(6)] == [0, 1, 2, 3, 0, 1]
    assert backend.gpu_for_rank(3, 1) == 0          # CUDA_VISIBLE_DEVICES: one GPU per rank
    with pytest.raises(ValueError, match="n_devices"):
        backend.gpu_for_rank(0, 0)


def test_select_gpu_makes_the_device_current_for_cupy_and_numba(monkeypatch):
    import types

    from numba import cuda

    from pysnn_ref import backend

    used = []
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 2),
        Device=lambda d: types.SimpleNamespace(use=lambda: used.append(("cupy", d))))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cuda, "select_device", lambda d: used.append(("numba", d)),
                        raising=False)
    assert backend.select_gpu(3) == 1
    assert used == [("cupy", 1), ("numba", 1)]


@needs_mpi
def test_mpi_ranks_know_their_rank_on_the_machine(tmp_path):
    code = ("from pysnn_ref.train import distributed as D; c = D.init(True); "
            "open(f'rank{c.rank}.txt', 'w').write(f'{c.rank} {c.local_rank} {c.size}')")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    got = [(tmp_path / f"rank{i}.txt").read_text() for i in range(2)]
    assert got == ["0 0 2", "1 1 2"]
