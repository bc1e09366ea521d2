"""Runs the numba.cuda simulator tests (tests/test_cuda_sim.py, tests/test_cuda_family_sim.py) in
their own process.

The simulator must be switched on (``NUMBA_ENABLE_CUDASIM=1``) before numba is imported, and this
process has imported numba already, so the simulator tests get a fresh interpreter.  The
``-m cudasim`` on the command line overrides the ``-m "not slow and not cudasim"`` of setup.cfg's
addopts (pytest keeps the last ``-m``); the pass count below proves they actually ran.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: tests/test_cuda_sim.py and tests/test_cuda_family_sim.py hold 147 tests together
MIN_PASSED = 147


def test_cuda_kernels_equal_reference_in_simulator():
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cudasim",
           "tests/test_cuda_sim.py", "tests/test_cuda_family_sim.py", "-p", "no:cacheprovider"]
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"simulator tests ran over 600 s:\n{e.stdout or ''}\n{e.stderr or ''}")
    out = proc.stdout + proc.stderr
    if "numba.cuda cannot be imported" in out:
        pytest.skip("numba.cuda cannot be imported here: pip install numba-cuda")
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{out}"
    m = re.search(r"(\d+) passed", out)
    passed = int(m.group(1)) if m else 0
    assert passed >= MIN_PASSED, f"expected >= {MIN_PASSED} passed, got {passed}:\n{out}"
