"""kernels.cuda._launch silences numba-cuda's low-occupancy warning for its own small grids
only (issue 22): nothing global, other warnings pass, large grids are left alone.  No GPU and no
simulator needed: the kernel is a stand-in that records its configuration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

ck = pytest.importorskip("pysnn_ref.kernels.cuda", reason="numba.cuda cannot be imported")


class _Kernel:
    """Warns like numba-cuda when configured with a small grid; records the call."""

    def __init__(self, warn_cls):
        self.warn_cls, self.calls = warn_cls, []

    def __getitem__(self, cfg):
        blocks = cfg[0]
        if blocks < 128:
            warnings.warn(self.warn_cls(f"Grid size {blocks} will likely result in GPU "
                                        "under-utilization due to low occupancy."),
                          stacklevel=2)

        def run(*args):
            warnings.warn(UserWarning("a warning of the kernel call itself"), stacklevel=2)
            self.calls.append((cfg, args))

        return run


@pytest.mark.parametrize("warn_cls", ck._PERF_WARNINGS)
def test_small_grids_launch_without_the_low_occupancy_warning(warn_cls):
    assert ck._PERF_WARNINGS
    k = _Kernel(warn_cls)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        ck._launch(k, 1000, np.zeros(1), "arg")            # 8 blocks
        assert [type(w.message) for w in got] == [UserWarning]
        got.clear()
        warnings.warn(warn_cls("the user's own"), stacklevel=1)  # not silenced elsewhere
        assert [type(w.message) for w in got] == [warn_cls]
        got.clear()
        ck._launch(k, 128 * 128 * 2, np.zeros(1), "arg")    # 128 blocks: no silencing needed
        assert [type(w.message) for w in got] == [UserWarning]
    assert warnings.filters == filters
    assert [c[0][:2] for c in k.calls] == [ck.launch_config(1000), ck.launch_config(32768)]
