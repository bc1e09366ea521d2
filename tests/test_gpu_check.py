"""benchmarks/gpu_check.py (issue 13, item 3): the one-command real-GPU check, run here with
``--smoke`` under numba's CUDA simulator and the NumPy-backed CuPy stand-in of tests/fakecupy
(both must be set before Python starts, hence a subprocess), and without them (no GPU: one line,
exit 2).  The smoke run takes about 10-30 s on 2 cores."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
FAKECUPY = ROOT / "tests" / "fakecupy"
METHODS = ("bptt", "asf", "ssf")


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _env(fake: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "PYTHONPATH")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's pysnn_ref, installed or not
    if fake:
        env.update(NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join([str(FAKECUPY), str(ROOT)]))
    return env


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check") / "smoke.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(True), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())
    result["_stdout"] = proc.stdout
    return result


def test_smoke_runs_on_the_fake_gpu(smoke) -> None:
    gc = _load_script()
    assert smoke["schema"] == gc.SCHEMA and smoke["smoke"] is True
    assert smoke["device"]["simulator"] is True and smoke["device"]["cupy"] == "0.0-fake"
    assert "parity PASS" in smoke["_stdout"]


def test_smoke_parity_every_kernel_both_dtypes_within_tolerance(smoke) -> None:
    gc = _load_script()
    rows = smoke["parity"]["rows"]
    assert {(r["kernel"], r["dtype"]) for r in rows} == \
        {(k, d) for k in gc.KERNELS for d in ("float64", "float32")}
    assert smoke["parity"]["pass"] is True
    for r in rows:
        assert r["pass"] and r["cases"] >= 2, r
        assert r["max_rel"] <= gc.RTOL[r["dtype"]], r
        if r["kernel"].startswith("lif_forward"):
            assert r["neurons"] > 0 and r["spike_flips"] == 0, r
        if r["dtype"] == "float64":  # the simulator runs the same operations as the CPU kernels
            assert r["max_rel"] <= 1e-12, r


def test_smoke_step_time_and_memory_per_method_and_T(smoke) -> None:
    steps = smoke["steps"]
    assert steps["model"] == "lenet"
    recs = {(r["method"], r["T"]): r for r in steps["records"]}
    assert set(recs) == {(m, T) for m in METHODS for T in steps["T"]}
    for r in recs.values():
        assert r["device"] == "gpu" and r["model"] == "lenet"
        assert r["step_s"] > 0 and r["forward_s"] > 0 and r["backward_s"] > 0, r
        assert r["peak_mem_bytes"] > 0 and "MemoryHook" in r["mem_method"], r
    T1, T2 = steps["T"][0], steps["T"][-1]  # BPTT keeps every step's state; the flows do not

    def growth(m: str) -> int:
        return recs[(m, T2)]["peak_mem_bytes"] - recs[(m, T1)]["peak_mem_bytes"]

    assert growth("bptt") > max(growth("asf"), growth("ssf"), 0)
    assert [p["T"] for p in steps["pool"]] == steps["T"]
    for p in steps["pool"]:
        assert p["pool_total_bytes"] > 0 and 0 <= p["pool_used_bytes"] <= p["pool_total_bytes"]


def test_smoke_torch_section_says_why_it_is_absent(smoke) -> None:
    status = smoke["torch"]["status"]
    if importlib.util.find_spec("torch") is None:
        assert status == "not installed"
    else:  # the simulator has no CUDA torch
        assert status.startswith("no CUDA")
    assert not any(r["method"] == "torch" for r in smoke["steps"]["records"])


def test_without_gpu_one_line_and_exit_2(tmp_path) -> None:
    out = tmp_path / "none.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
                          cwd=ROOT, env=_env(False), capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        pytest.skip("a usable GPU is present")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "gpu" in lines[0] and "pip install" in lines[0], lines[0]
    assert not out.exists()


def test_compare_counts_spike_flips_and_fails_on_wrong_values() -> None:
    gc = _load_script()
    rng = np.random.default_rng(0)
    o = (rng.random((4, 50)) > 0.5).astype(np.float32)
    u = rng.normal(size=(4, 50)).astype(np.float32)
    o2, u2 = o.copy(), u.copy()
    o2[1, 7] = 1.0 - o2[1, 7]  # neuron 7 flips ...
    u2[2:, 7] += 3.0           # ... and its later membrane diverges: left out, counted
    err, _, rel, flips, neurons = gc._compare([o, u], [o2, u2], neuron_kernel=True)
    assert (flips, neurons) == (1, 50) and err == 0.0 and rel == 0.0
    u2[0, 3] += 1e-2           # a wrong value in a neuron that did not flip
    err, _, rel, _, _ = gc._compare([o, u], [o2, u2], neuron_kernel=True)
    assert err == pytest.approx(1e-2, rel=1e-3) and rel > gc.RTOL["float32"]
    err, _, rel, flips, _ = gc._compare([u], [u[:2]], neuron_kernel=False)
    assert rel == float("inf") and flips == 0


def test_kernel_parity_passes_for_equal_kernels_and_fails_for_a_wrong_one() -> None:
    """kernel_parity on the host: the CPU kernels against themselves pass; a kernel with one
    wrong entry, or one that flips a neuron's spikes, is caught."""
    import types

    from pysnn_ref.backend import Backend
    from pysnn_ref.kernels import cpu

    gc = _load_script()
    sizes = {"T": 3, "N": 40, "img": (1, 2, 5, 5)}
    same = gc.kernel_parity(Backend("cpu", np, cpu), sizes, log=lambda s: None)
    assert len(same) == 2 * len(gc.KERNELS) and all(r["pass"] for r in same)

    def bad_im2col(*a):
        cols = cpu.im2col(*a)
        cols.flat[5] += 1.0
        return cols

    def flipping_lif_forward(*a):
        o, u = cpu.lif_forward(*a)
        return np.where(np.arange(o.shape[1]) < 5, 1.0 - o, o).astype(o.dtype), u

    wrong = types.SimpleNamespace(**{k: getattr(cpu, k) for k in gc.KERNELS})
    wrong.im2col, wrong.lif_forward = bad_im2col, flipping_lif_forward
    rows = {(r["kernel"], r["dtype"]): r for r in
            gc.kernel_parity(Backend("cpu", np, wrong), sizes, log=lambda s: None)}
    for dtype in ("float64", "float32"):
        assert not rows[("im2col", dtype)]["pass"]
        lif = rows[("lif_forward", dtype)]
        # 5 flips in each of the 2 Heaviside cases (the smooth ones count |1 - 2o| > 1/2 only)
        assert not lif["pass"] and lif["spike_flips"] >= 10, lif
        assert rows[("col2im", dtype)]["pass"] and rows[("lif_backward", dtype)]["pass"]


def test_smoke_open_neuromorphic_workload(smoke) -> None:
    gc = _load_script()
    assert gc.ON_FULL == {"inputs": 16384, "neurons": 16384, "batch": 16, "T": 500,
                          "repeats": 3, "warmup": 1}       # the benchmark's sizes (issue 22)
    on = smoke["open_neuromorphic"]
    assert on["workload"] == gc.ON_SMOKE
    ours = on["ours"]
    assert ours["forward_s"] > 0 and ours["backward_s"] > 0
    assert ours["step_s"] == pytest.approx(ours["forward_s"] + ours["backward_s"], rel=0.5)
    assert 0.0 < ours["firing_rate"] < 1.0 and ours["pool_total_bytes"] > 0
    if importlib.util.find_spec("torch") is None:
        assert on["torch"] is None and on["torch_device"] is None
    else:  # torch without CUDA: its code path runs on the CPU in --smoke
        assert on["torch_device"] == "cpu"
        assert on["torch"]["firing_rate"] == pytest.approx(ours["firing_rate"], abs=1e-6)
    assert "4. Open Neuromorphic workload" in smoke["_stdout"]


def test_open_neuromorphic_layers_agree_on_the_cpu() -> None:
    # our layer, PyTorch autograd's and SpikingJelly's (where installed) see the same weights
    # and input spikes, so they fire the same spikes
    from pysnn_ref import backend

    gc = _load_script()
    torch = importlib.util.find_spec("torch")
    cfg = {"inputs": 24, "neurons": 40, "batch": 3, "T": 7, "repeats": 1, "warmup": 0}
    on = gc.on_benchmark(backend.get_backend("cpu"), cfg, "cpu" if torch else None,
                         log=lambda s: None)
    rate = on["ours"]["firing_rate"]
    assert 0.0 < rate < 1.0 and on["ours"]["pool_total_bytes"] is None
    if torch is None:
        pytest.skip("torch is not installed: only our layer was timed")
    assert on["torch"]["firing_rate"] == pytest.approx(rate, abs=1e-6)
    sj = on["spikingjelly"]
    if "status" in sj:
        assert sj["status"].startswith("not installed"), sj
    else:
        assert sj["firing_rate"] == pytest.approx(rate, abs=1e-6)
