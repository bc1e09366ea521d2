"""The benchmark CLI (python -m pysnn_ref.bench) on tiny sizes: records, files, plots, errors."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from pysnn_ref.bench import __main__ as bench
from pysnn_ref.bench import measure as bench_measure
from pysnn_ref.bench import report as bench_report

REQUIRED = ("method", "T", "forward_s", "backward_s", "optimizer_s", "step_s", "peak_mem_bytes",
            "model", "batch", "device", "dtype", "first_step_s", "compile_s", "mem_method")


def _run(argv, capsys):
    try:
        rc = bench.cli(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_tiny_run_writes_records_csv_and_plots(model, tmp_path, capsys):
    js, cs, plots = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "img"
    threads_before = bench_measure.thread_count()
    extra = ["--threads", "1"] if model == "mlp" else []
    rc, out, err = _run(["--model", model, "--methods", "bptt,asf,ssf", "--T", "2,8",
                         "--batch-size", "4", "--repeats", "2", "--warmup", "1",
                         "--json", str(js), "--csv", str(cs), "--plots", str(plots), *extra],
                        capsys)
    assert rc == 0, err
    assert bench_measure.thread_count() == threads_before  # --threads is undone after the run
    recs = json.loads(js.read_text())
    assert [(r["method"], r["T"]) for r in recs] == [
        (m, T) for T in (2, 8) for m in ("bptt", "asf", "ssf")]
    for r in recs:
        for f in REQUIRED:
            assert f in r, f
        assert r["model"] == model and r["batch"] == 4 and r["device"] == "cpu"
        assert r["dtype"] == "float32"
        assert r["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "default")
        if extra:
            assert r["threads"] == 1 and r["blas_threads"] in (1, None)
        for f in ("forward_s", "backward_s", "optimizer_s", "step_s", "first_step_s"):
            assert r[f] > 0, (f, r)
        assert r["step_s"] >= max(r["forward_s"], r["backward_s"])
        assert isinstance(r["peak_mem_bytes"], int) and r["peak_mem_bytes"] > 0
        assert "tracemalloc" in r["mem_method"]
    by = {(r["method"], r["T"]): r for r in recs}
    # T = 8: the flows keep accumulators, bptt keeps 8 steps (at T = 4 the two are about equal)
    for m in ("asf", "ssf"):
        assert by[(m, 8)]["peak_mem_bytes"] <= by[("bptt", 8)]["peak_mem_bytes"], m
        assert by[(m, 8)]["backward_speedup_vs_bptt"] == pytest.approx(
            by[("bptt", 8)]["backward_s"] / by[(m, 8)]["backward_s"])
    # bptt keeps every step: its step memory grows with T
    assert by[("bptt", 8)]["peak_mem_bytes"] > by[("bptt", 2)]["peak_mem_bytes"]
    with open(cs) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(recs)
    assert set(REQUIRED) <= set(rows[0])
    assert float(rows[0]["step_s"]) == pytest.approx(recs[0]["step_s"])
    assert rows[0]["input_shape"] == "1x28x28"
    for name in ("time", "speedup", "memory"):
        p = plots / f"{model}-{name}.png"
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
    # the printed table has one row per record and says how memory was measured
    assert "tracemalloc" in out and "peak MiB" in out
    rows = [s for s in out.splitlines() if re.match(r"^\s*(bptt|asf|ssf)\s+\d+\s", s)]
    assert len(rows) == len(recs)


def test_flow_memory_is_flat_and_bptt_grows(capsys, tmp_path):
    """The memory claim on a small net: from T=4 to T=16 bptt's step memory grows several-fold,
    the flow methods' stays (nearly) the same."""
    js = tmp_path / "m.json"
    rc, _, err = _run(["--model", "convnet", "--T", "4,16", "--batch-size", "2", "--repeats", "1",
                       "--warmup", "1", "--threads", "1", "--json", str(js)], capsys)
    assert rc == 0, err
    by = {(r["method"], r["T"]): r["peak_mem_bytes"] for r in json.loads(js.read_text())}
    assert by[("bptt", 16)] > 2.5 * by[("bptt", 4)]
    for m in ("asf", "ssf"):
        assert by[(m, 16)] <= 1.3 * by[(m, 4)], (m, by)


def test_kernel_times_counts_the_kernels_of_a_step_and_restores_them(capsys):
    """--kernel-times N: every kernel of the step, its calls per step and ms per step, over N
    extra steps; the kernel module is the same afterwards (no timer left in place)."""
    from pysnn_ref.kernels import cpu

    before = {n: getattr(cpu, n) for n in ("lif_forward_count", "lif_backward_time_sum",
                                           "matmul")}
    rc, out, err = _run(["--model", "mlp", "--methods", "bptt", "--T", "3", "--batch-size", "4",
                         "--repeats", "1", "--warmup", "1", "--no-memory", "--kernel-times",
                         "2"], capsys)
    assert rc == 0, err
    assert "kernel times, mean of 2 steps: mlp bptt T=3" in err
    rows = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
            re.finditer(r"^\s+(\w+)\s+([\d.]+)\s+([\d.]+)$", err, re.M)}
    # Flatten, Linear 784-800 (static input: runs once), LIF, Linear 800-10: one LIF forward
    # (counting its spikes for the firing rate) and, below it, the time-summed backward for the
    # static-input layer
    assert rows["lif_forward_count"][0] == 1.0 and rows["lif_backward_time_sum"][0] == 1.0
    assert all(ms >= 0 for _, ms in rows.values())
    assert {n: getattr(cpu, n) for n in before} == before


def test_records_and_table_helpers():
    recs = [{f: None for f in bench_measure.FIELDS} | {"method": m, "T": T, "forward_s": 0.001 * T,
             "backward_s": (0.002 * T if m == "bptt" else 0.001), "optimizer_s": 1e-4,
             "step_s": 0.01 * T, "compile_s": 0.0, "first_step_s": 0.1,
             "peak_mem_bytes": 1000 * (T if m == "bptt" else 1), "firing_rate": 0.1,
             "model": "mlp", "batch": 2, "device": "cpu", "dtype": "float32", "threads": 2,
             "input_shape": [1, 28, 28]}
            for T in (4, 8) for m in ("bptt", "ssf")]
    table = bench_report.format_table(recs)
    assert len(table.splitlines()) == 2 + len(recs)
    lines = bench_report.summary(recs)
    assert any("bptt peak memory T=8 / T=4: 2.00x" in s for s in lines)
    assert any("ssf peak memory T=8 / T=4: 1.00x" in s for s in lines)


@pytest.mark.parametrize("argv, needle", [
    (["--model", "nope"], "model"),
    (["--methods", "bptt,foo"], "methods"),
    (["--T", "0"], "T"),
    (["--T", "4,x"], "T"),
    (["--batch-size", "0"], "batch-size"),
    (["--dtype", "float16"], "dtype"),
    (["--input-shape", "1,28"], "image input"),
    (["--kernel-times", "-1"], "kernel-times"),
])
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    rc, _, err = _run(["--T", "2", "--batch-size", "2", *argv], capsys)
    assert rc == 2
    lines = [s for s in err.splitlines() if s.strip()]
    assert len(lines) == 1, err
    assert "error" in lines[0] and needle in lines[0]
    assert "Traceback" not in err


def test_gpu_without_gpu_is_one_line_exit_2():
    """A subprocess, as a user would run it: no traceback, exit 2, one line on stderr."""
    from pysnn_ref.backend import get_backend
    from pysnn_ref.errors import GPUUnavailableError

    try:
        get_backend("gpu")
        pytest.skip("a usable GPU is present")
    except GPUUnavailableError:
        pass
    p = subprocess.run([sys.executable, "-m", "pysnn_ref.bench", "--device", "gpu", "--T", "2",
                        "--batch-size", "2"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [s for s in p.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and "gpu" in lines[0].lower(), p.stderr


def test_vs_torch_without_torch_is_one_line_exit_2(capsys, monkeypatch):
    from pysnn_ref.bench import torch_ref

    monkeypatch.setattr(torch_ref, "torch", None)
    rc, _, err = _run(["--model", "mlp", "--T", "2", "--batch-size", "2", "--vs-torch"], capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "torch" in err


def test_vs_torch_tiny(tmp_path, capsys):
    pytest.importorskip("torch")
    js = tmp_path / "t.json"
    rc, out, err = _run(["--model", "convnet", "--methods", "bptt", "--T", "3", "--threads", "1",
                         "--batch-size", "4", "--repeats", "1", "--warmup", "1", "--vs-torch",
                         "--json", str(js)], capsys)
    assert rc == 0, err
    recs = json.loads(js.read_text())
    t = [r for r in recs if r["method"] == "torch"]
    assert len(t) == 1 and t[0]["step_s"] > 0
    assert t[0]["grad_max_rel_diff_f64_smooth"] <= 1e-9
    assert 0 <= t[0]["spike_mismatches"] < t[0]["spikes_total"]
    if t[0]["spike_mismatches"] == 0:
        assert t[0]["grad_max_rel_diff"] <= 1e-4
    assert t[0]["bptt_over_torch"] == pytest.approx(recs[0]["step_s"] / t[0]["step_s"])
    assert "PyTorch" in out


def test_synthetic_batch_shapes():
    x, y = bench_measure.synthetic_batch(3, (1, 4, 4), 5, np.float64)
    assert x.shape == (3, 1, 4, 4) and x.dtype == np.float64 and y.shape == (3,)
    assert y.min() >= 0 and y.max() < 5


def _peers_script():
    """benchmarks/peers.py, imported by path (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
    spec = importlib.util.spec_from_file_location("peers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_peers_script_selects_configurations_and_rejects_bad_input(capsys):
    """benchmarks/peers.py (timing against SpikingJelly / snnTorch, run where they are
    installed): a library name selects all its configurations, in order, without repeats; an
    unknown name, or a peer library that is not importable, is one line and exit 2."""
    peers = _peers_script()
    assert peers.select_configs("snntorch, torch,snntorch-nodelay") == [
        "snntorch", "snntorch-nodelay", "torch"]
    assert peers.select_configs("spikingjelly-compile") == ["spikingjelly-compile"]
    for bad in ("jax", ","):
        with pytest.raises(ValueError, match="peers"):
            peers.select_configs(bad)
    assert peers.cli(["--peers", "jax"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unknown name 'jax'" in err
    with pytest.raises(ValueError, match="not importable.*pip install"):
        peers.import_peer("no_such_peer_lib_xyz")


def test_peers_on_lif_workload_selects_norse_and_runs_ours(capsys):
    """``--model on-lif`` (the Open Neuromorphic Linear + LIF workload, benchmarks/peers_on.py):
    'norse' selects its two configurations there and is unknown for the other models; a bad size
    is one line and exit 2; our side of the workload is the BPTT gradient of sum(spikes)."""
    peers = _peers_script()
    on = peers.on_module()
    assert peers.select_configs("norse,torch", on.ON_GROUPS) == ["norse", "norse-compile",
                                                                 "torch"]
    with pytest.raises(ValueError, match="unknown name 'norse'"):
        peers.select_configs("norse")
    assert peers.cli(["--model", "on-lif", "--neurons", "0", "--peers", "torch"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "neurons" in err
    w = on.OnWorkload(12, 7, 3)
    ours = on.OursOn(w)
    g = ours.gradients()
    # the same gradient through the functional pairs: dI = lif_backward(1), dW = dI^T x
    from pysnn_ref.functional.neuron import lif_backward, lif_forward

    I = w.x @ w.W.T + w.b
    o, cache = lif_forward(I, lam=0.5, v_th=1.0)
    dI = lif_backward(np.ones_like(o), cache)
    np.testing.assert_allclose(g["W"], dI.reshape(-1, 12).T @ w.x.reshape(-1, 12), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(g["b"], dI.sum(axis=(0, 1)), rtol=1e-4, atol=1e-5)
    assert np.array_equal(ours.spikes(), o) and 0 < o.mean() < 1
