"""Finite differences of device parameters equal the host's (issue 22, finding 2).

In CuPy ``flat[i]`` is a 0-d *view*, so ``old = flat[i]; flat[i] = old + eps`` moves ``old``
with the element and the second loss was taken at ``w`` instead of ``w - eps``.  The CuPy
stand-in of ``tests/fakecupy`` returns views the same way, so this test (a subprocess under
numba's CUDA simulator, which must be set before numba is imported) compares
``gradcheck.finite_difference_gradient`` (Dspike Eq. 10, used by ``--dspike-adapt`` and
``cosine_vs(reference="fdg")``) on the device with the same on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fakecupy"


def _drive(out: Path) -> None:
    import cupy

    from pysnn_ref import backend, models, nn
    from pysnn_ref.gradcheck import finite_difference_gradient

    rng = np.random.default_rng(3)
    x = rng.normal(0.5, 1.0, size=(4, 3, 6))     # time-major (T, B, features)
    labels = np.array([0, 2, 1])
    res = {}
    for device in ("cpu", "gpu"):
        net = models.build_from_string("FC5", (6,), 3, lambda: nn.LIF(0.8, 0.5, "hard",
                                                                      "sigmoid:4"),
                                       seed=1, dtype=np.float64)
        net.to(device)
        be = backend.get_backend(device)
        w0 = [be.to_numpy(p.data).copy() for p in net.parameters()]
        # layer 0 through the spikes (a big eps flips some), the read-out layer 2 directly
        g = finite_difference_gradient(net, be.asarray(x), be.asarray(labels),
                                       ["0.W", "2.W"], eps=0.3,
                                       indices={"0.W": [0, 3, 7, 11, 20, 29]})
        res[device] = {"g": np.concatenate([g["0.W"].ravel(), g["2.W"].ravel()]).tolist(),
                       "restored": all(np.array_equal(be.to_numpy(p.data), w) for p, w in
                                       zip(net.parameters(), w0, strict=True))}
    res["fake"] = cupy.__version__
    out.write_text(json.dumps(res))


def test_finite_difference_gradient_on_the_device_equals_the_host(tmp_path):
    out = tmp_path / "fdg.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYSNN_CUDA_MAX_BLOCKS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE), str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, __file__, str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r = json.loads(out.read_text())
    assert r["fake"].endswith("fake")
    g_cpu, g_gpu = np.array(r["cpu"]["g"]), np.array(r["gpu"]["g"])
    assert np.count_nonzero(g_cpu) >= 10                # the check has something to compare
    np.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-9, atol=1e-12)
    assert r["cpu"]["restored"] and r["gpu"]["restored"]


if __name__ == "__main__":
    _drive(Path(sys.argv[1]))
