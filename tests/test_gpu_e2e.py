"""The GPU path end to end, without a GPU: train, gradcheck and bench CLIs with ``--device gpu``
equal to ``--device cpu``.

The GPU runs use ``tests/fakecupy`` (a NumPy-backed CuPy stand-in that counts device->host
transfers) and numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) for the numba.cuda kernels,
so everything the GPU path does except the real device runs: the CuPy code of the layers,
losses, optimizer and metrics, the numba.cuda kernels, the device-side read-out of the trainer.
Both must be set before numba is imported, so the runs happen in subprocesses: this file is
also the driver (``python tests/test_gpu_e2e.py DEVICE OUT``) that runs every CLI of
:data:`JOBS` in one process and writes ``OUT/results.json``.  The GPU and the CPU driver run
side by side (about 70 s for the GPU one on the 2-core dev machine; the simulator runs each
CUDA thread as Python code, so the sizes are tiny: batches of 2, T = 2, the 8x8 digits).
``PYSNN_CUDA_MAX_BLOCKS=1`` makes every launch one block (the kernels are grid-stride loops,
and tests/test_cuda_sim.py checks that one block gives the same results); the simulator pays
per block, so this is ~8x faster.

By hand::

    NUMBA_ENABLE_CUDASIM=1 PYSNN_CUDA_MAX_BLOCKS=1 PYTHONPATH=tests/fakecupy \\
        python -m pysnn_ref.train --device gpu --model lenet --method ssf --T 2 \\
        --batch-size 2 --max-batches 2 --epochs 1 --no-progress
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fakecupy"

TRAIN = ["--no-progress", "--no-plots", "--T", "2", "--epochs", "1", "--max-batches", "2",
         "--batch-size", "2", "--max-eval-batches", "1", "--seed", "5"]
F64_SGD = ["--dtype", "float64", "--optimizer", "sgd", "--lr", "0.1"]
#: name -> argv of python -m pysnn_ref.train (the --device and --out are added)
TRAIN_JOBS = {
    "mlp-bptt": ["--model", "mlp", "--method", "bptt", *F64_SGD],
    "mlp-asf": ["--model", "mlp", "--method", "asf", "--loss", "asf-mse", *F64_SGD],
    "mlp-ssf": ["--model", "mlp", "--method", "ssf", "--loss", "tet", *F64_SGD],
    "lenet-bptt": ["--model", "lenet", "--method", "bptt", "--surrogate", "sigmoid:4", *F64_SGD],
    "lenet-asf": ["--model", "lenet", "--method", "asf", "--asf-variant", "code", *F64_SGD],
    "lenet-ssf": ["--model", "lenet", "--method", "ssf", *F64_SGD],
    # Dspike Alg. 1 on the device: finite differences of device losses, cosines on the host
    "mlp-bptt-dspike": ["--model", "mlp", "--method", "bptt", "--surrogate", "dspike:2",
                        "--dspike-adapt", "--fdg-samples", "16", *F64_SGD],
    # the family's flow methods on the device: kernels/cuda_family.py
    "mlp-dsr": ["--model", "mlp", "--method", "dsr", *F64_SGD],
    "lenet-rate": ["--model", "lenet", "--method", "rate", *F64_SGD],
    # the online methods' per-step loop on the device (OTTT_O: an SGD step after every step)
    "mlp-ottt-o": ["--model", "mlp", "--method", "ottt", "--ottt-update", "O", "--loss", "tet",
                   *F64_SGD],
    "lenet-sltt": ["--model", "lenet", "--method", "sltt", "--loss", "tet", *F64_SGD],
    # the default dtype and optimizer: float32 kernels and Adam on the device
    "mlp-ssf-f32-adam": ["--model", "mlp", "--method", "ssf"],
    # BatchNorm in training under the flows: the one-pass BN forward (time_chunk auto) and
    # the collapsed BN backward, SSF and DSR (IF neurons) on the device
    "resnet-ssf": ["--model", "resnet", "--method", "ssf", *F64_SGD],
    "resnet-dsr-if": ["--model", "resnet", "--method", "dsr", "--neuron", "if", *F64_SGD],
}
#: relative tolerance of GPU vs CPU (weights, losses, rates) per dtype
RTOL = {"float64": 1e-9, "float32": 1e-4}
BENCH = ["--model", "mlp", "--input-shape", "1,4,4", "--T", "2", "--batch-size", "2",
         "--repeats", "1", "--warmup", "1", "--dtype", "float64"]


# ------------------------------------------------------------------------------------------
# the driver (runs in the subprocesses)
# ------------------------------------------------------------------------------------------

def _call(fn, argv: list[str]) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = fn(argv)
    return {"rc": rc, "stdout": buf.getvalue()}


def _drive(device: str, out: Path) -> None:
    from pysnn_ref.bench import __main__ as bench
    from pysnn_ref.gradcheck import __main__ as gradcheck
    from pysnn_ref.train import __main__ as train

    fake = None
    if device == "gpu":
        import cupy

        fake = cupy if getattr(cupy, "__version__", "") == "0.0-fake" else None
    res: dict[str, dict] = {}
    for name, argv in TRAIN_JOBS.items():
        if fake:
            fake.reset_transfers()
        res[name] = _call(train.main, [*TRAIN, *argv, "--device", device,
                                       "--out", str(out / name)])
        res[name]["d2h"] = fake.transfers() if fake else None
    res["gradcheck"] = _call(gradcheck.main, ["--device", device])
    res["bench"] = _call(bench.main, [*BENCH, "--device", device, "--json",
                                      str(out / "bench.json")])
    (out / "results.json").write_text(json.dumps(res, indent=1))


# ------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------

def _start(device: str, out: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    path = [str(ROOT)]
    if device == "gpu":
        env.update(NUMBA_ENABLE_CUDASIM="1", PYSNN_CUDA_MAX_BLOCKS="1")
        path.insert(0, str(FAKE))
    env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")])
    out.mkdir(parents=True)
    return subprocess.Popen([sys.executable, __file__, device, str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """{device: (results, out folder)} of the driver, GPU (simulated) and CPU side by side."""
    base = tmp_path_factory.mktemp("gpu_e2e")
    procs = {d: _start(d, base / d) for d in ("gpu", "cpu")}
    found = {}
    for d, p in procs.items():
        try:
            log, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail(f"the {d} driver ran over 600 s")
        if "numba.cuda cannot be imported" in log or "No module named 'numba.cuda" in log:
            pytest.skip("numba.cuda cannot be imported here: pip install numba-cuda")
        assert p.returncode == 0, f"{d} driver exited {p.returncode}:\n{log[-4000:]}"
        found[d] = (json.loads((base / d / "results.json").read_text()), base / d)
    return found


def _metrics(run: Path) -> list[dict]:
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines() if s]


def _close(a, b, rtol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-12)
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= rtol * scale


@pytest.mark.parametrize("job", list(TRAIN_JOBS))
def test_train_gpu_equals_cpu(runs, job):
    from pysnn_ref.train.checkpoint import read_checkpoint

    (rg, dg), (rc, dc) = runs["gpu"], runs["cpu"]
    assert rg[job]["rc"] == 0 and rc[job]["rc"] == 0, (rg[job], rc[job])
    assert "| gpu" in rg[job]["stdout"] and "| cpu" in rc[job]["stdout"]
    last_g = rg[job]["stdout"].strip().splitlines()[-1]
    assert last_g == rc[job]["stdout"].strip().splitlines()[-1]
    assert re.fullmatch(r"test_acc=\d\.\d{4}", last_g)
    cfg = json.loads((dg / job / "config.json").read_text())
    rtol = RTOL[cfg.get("dtype", "float32")]
    # the run log: every recorded figure but the timings
    (mg,), (mc,) = _metrics(dg / job), _metrics(dc / job)
    assert set(mg) == set(mc)
    for k in mg:
        if k.endswith("_s"):
            assert mg[k] >= 0.0
        elif k == "firing_rates":
            assert mg[k].keys() == mc[k].keys()
            assert _close(list(mg[k].values()), list(mc[k].values()), rtol), (mg[k], mc[k])
        elif k in ("train_acc", "test_acc", "epoch", "stage", "T"):
            assert mg[k] == mc[k], k
        else:
            assert _close(mg[k], mc[k], rtol), (k, mg[k], mc[k])
    assert np.isfinite(mg["loss"]) and 0.0 < mg["firing_rate"] < 1.0
    # the final weights, from the run folder's checkpoint
    wg, _, meta_g = read_checkpoint(dg / job / "last.npz")
    wc, _, _ = read_checkpoint(dc / job / "last.npz")
    assert wg.keys() == wc.keys() and len(wg) >= 4
    for k in wg:
        assert _close(wg[k], wc[k], rtol), (job, k, np.abs(wg[k] - wc[k]).max())
    assert meta_g["config"]["device"] == "gpu"
    # a whole run (2 steps, evaluation, checkpoints, energy) reads the device only at its
    # read-outs and checkpoint writes (each parameter and optimizer buffer, twice: best.npz
    # and last.npz), never per step or per element (measured 20-47)
    if "dspike" not in job:  # (FDG: two device losses read per sampled weight)
        assert rg[job]["d2h"] is not None and rg[job]["d2h"] <= 6 * len(wg) + 20, rg[job]["d2h"]


def _gradcheck_rows(stdout: str) -> dict[tuple[str, str], float]:
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(.*\S)\s+(\S+)\s+(\d\.\d\de[-+]\d+)\s+(yes|NO)$", line)
        if m:
            rows[m.group(1), m.group(2)] = float(m.group(3))
    return rows


def test_gradcheck_gpu_passes_equal_to_cpu(runs):
    (rg, _), (rc, _) = runs["gpu"], runs["cpu"]
    assert rg["gradcheck"]["rc"] == 0, rg["gradcheck"]["stdout"][-3000:]
    g, c = _gradcheck_rows(rg["gradcheck"]["stdout"]), _gradcheck_rows(rc["gradcheck"]["stdout"])
    # the T-independent family (dsr / rate / ottt / sltt networks) has no CUDA kernels: CPU
    # rows only
    c = {k: v for k, v in c.items() if not k[0].startswith(("dsr network", "rate network",
                                                            "ottt network", "sltt network"))}
    assert len(g) >= 80 and g.keys() == c.keys()
    assert re.search(rf"\b{len(g)} passed, 0 failed", rg["gradcheck"]["stdout"])
    for k in g:  # same finite differences (CPU), analytic gradients on either device
        assert abs(g[k] - c[k]) <= 0.02 * c[k] + 1e-12, (k, g[k], c[k])


def test_bench_gpu_records_sane_figures(runs):
    (rg, dg), (_, dc) = runs["gpu"], runs["cpu"]
    assert rg["bench"]["rc"] == 0, rg["bench"]["stdout"][-3000:]
    g = {r["method"]: r for r in json.loads((dg / "bench.json").read_text())}
    c = {r["method"]: r for r in json.loads((dc / "bench.json").read_text())}
    assert set(g) == set(c) == {"bptt", "asf", "ssf"}
    for m, r in g.items():
        assert r["device"] == "gpu" and r["T"] == 2 and r["batch"] == 2
        for k in ("forward_s", "backward_s", "step_s", "first_step_s"):
            assert np.isfinite(r[k]) and r[k] > 0, (m, k, r[k])
        assert r["step_s"] >= r["forward_s"] + r["backward_s"] - 1e-9
        assert r["peak_mem_bytes"] > 0 and "CuPy" in r["mem_method"]
        assert _close(r["firing_rate"], c[m]["firing_rate"], 1e-9), (m, r["firing_rate"])
    # the flows keep no per-step history: less device memory than BPTT's, as on the CPU
    assert g["ssf"]["peak_mem_bytes"] < g["bptt"]["peak_mem_bytes"]
    assert g["asf"]["backward_speedup_vs_bptt"] > 0
    for m in g:
        assert re.search(rf"^\s*{m}\s+2\s", rg["bench"]["stdout"], re.M), m


if __name__ == "__main__":
    _drive(sys.argv[1], Path(sys.argv[2]))
