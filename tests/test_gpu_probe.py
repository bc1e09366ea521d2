"""``--device gpu`` probes at start-up what the run will use (issue 22, finding 1).

A CuPy wheel without its CUDA library wheels imports fine and finds the GPU, then fails with
``ImportError: libcublas.so.12`` at the first GEMM (or ``libcurand.so.10`` at the first Poisson
draw).  The backend therefore tries, once, a cuBLAS handle, one CuPy kernel (NVRTC), one
numba.cuda launch and, for a Poisson input, cuRAND; a missing piece is one line naming the
library and ``pip install -e ".[gpu]"``, exit code 2, no traceback.

The CLI runs use the CuPy stand-in of ``tests/fakecupy`` with ``FAKECUPY_MISSING`` (which makes
it fail as CuPy does without that library) under numba's CUDA simulator, in subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pysnn_ref import backend

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fakecupy"
TRAIN = ["-m", "pysnn_ref.train", "--device", "gpu", "--model", "mlp", "--T", "2",
         "--batch-size", "2", "--max-batches", "1", "--epochs", "1", "--max-eval-batches", "1",
         "--no-progress", "--no-plots"]
HINT = 'pip install -e ".[gpu]"'


def _run(args: list[str], missing: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYSNN_CUDA_MAX_BLOCKS="1",
               FAKECUPY_MISSING=missing)
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert HINT in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("missing, names", [
    ("cublas", ["cuBLAS", "libcublas.so.12"]),
    ("nvrtc", ["NVRTC", "libnvrtc.so.12"]),
])
def test_train_without_a_library_every_run_loads_is_one_line_exit_2(tmp_path, missing, names):
    line = _one_line(_run([*TRAIN, "--out", str(tmp_path / "run")], missing, tmp_path))
    assert all(n in line for n in names), line
    assert not (tmp_path / "run" / "config.json").exists()


def test_poisson_input_without_curand_is_one_line_exit_2(tmp_path):
    line = _one_line(_run([*TRAIN, "--encoder", "poisson", "--out", str(tmp_path / "run")],
                          "curand", tmp_path))
    assert "cuRAND" in line and "libcurand.so.10" in line, line
    bench = ["-m", "pysnn_ref.bench", "--device", "gpu", "--model", "mlp", "--input-shape",
             "1,4,4", "--T", "2", "--batch-size", "2", "--repeats", "1", "--warmup", "1",
             "--encoder", "poisson", "--json", str(tmp_path / "b.json")]
    assert "cuRAND" in _one_line(_run(bench, "curand", tmp_path))


def test_direct_input_does_not_need_curand(tmp_path):
    proc = _run([*TRAIN, "--out", str(tmp_path / "run")], "curand", tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "run" / "last.npz").exists()


def test_a_failing_numba_launch_is_one_line_naming_numba_cuda(monkeypatch):
    class Arr:
        def __add__(self, other):
            return self

    def broken(out):
        raise RuntimeError("NvvmSupportError: libNVVM cannot be found.\nmore text")

    cupy = SimpleNamespace(cuda=SimpleNamespace(
        device=SimpleNamespace(get_cublas_handle=lambda: 1),
        get_current_stream=lambda: SimpleNamespace(synchronize=lambda: None)),
        zeros=lambda *a, **k: Arr())
    with pytest.raises(backend.GPUUnavailableError) as e:
        backend._probe_gpu(cupy, SimpleNamespace(launch_probe=broken))
    msg = str(e.value)
    assert "\n" not in msg and "numba.cuda" in msg and "libNVVM" in msg and HINT in msg


def test_same_view_is_a_host_check_of_the_view():
    x = np.arange(24.0).reshape(2, 3, 4)
    xs = np.broadcast_to(x[0], (5, 3, 4))          # a time-broadcast (static) input
    assert backend.same_view(xs[0:2][0], xs[2:4][0])  # its time chunks: the same elements
    assert not backend.same_view(x[0], x[1])
    assert not backend.same_view(x[0], x[0].copy())
    assert not backend.same_view(x[0], x[0, :2])
    assert not backend.same_view(x[0], x[0].astype(np.float32))


def test_the_gpu_extra_brings_every_library_the_gpu_path_loads():
    # issue 22: cupy-cuda12x alone has no cuBLAS / cuRAND (libcublas.so.12 not found at the
    # first GEMM); numba-cuda 0.20-0.24 synchronise the stream for every CuPy array argument
    import configparser
    import re

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = [r.strip() for r in cfg["options.extras_require"]["gpu"].splitlines() if r.strip()]
    by_name = {re.split(r"[\[<>=]", r)[0]: r for r in reqs}
    assert by_name["cupy-cuda12x"] == "cupy-cuda12x>=14"
    assert by_name["numba-cuda"] == "numba-cuda[cu12]>=0.26"
    m = re.fullmatch(r"cuda-toolkit\[([a-z,]+)\]==12\.\*", by_name["cuda-toolkit"])
    assert m and {"cublas", "curand", "nvrtc", "cudart"} <= set(m.group(1).split(","))
