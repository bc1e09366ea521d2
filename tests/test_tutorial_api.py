"""The public functions the chapters call instead of library internals (issue 27):
``pysnn_ref.bench.benchmark`` (the benchmark sweep with keyword arguments, chapter 16) and
``FlowState.like`` (a flow state for the neurons an input drives, chapter 11)."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref.bench import benchmark
from pysnn_ref.functional import flows
from pysnn_ref.functional.neuron import make_neuron_params


def test_benchmark_runs_every_method_and_T_with_the_measured_fields() -> None:
    records = benchmark(model="mlp", methods=("bptt", "ssf"), T=(1, 3), batch_size=4,
                        repeats=1, warmup=1, input_shape=(1, 4, 4))
    assert sorted((r["method"], r["T"]) for r in records) == [
        ("bptt", 1), ("bptt", 3), ("ssf", 1), ("ssf", 3)]
    for r in records:
        assert r["model"] == "mlp" and r["batch"] == 4 and r["input_shape"] == [1, 4, 4]
        assert r["forward_s"] > 0 and r["backward_s"] > 0 and r["peak_mem_bytes"] > 0
    # BPTT keeps T steps: its step's peak memory grows with T
    mem = {(r["method"], r["T"]): r["peak_mem_bytes"] for r in records}
    assert mem["bptt", 3] > mem["bptt", 1]


@pytest.mark.parametrize("kwargs, name", [
    ({"methods": "bptt"}, "methods"), ({"methods": ("bptt", "nope")}, "methods"),
    ({"T": 4}, "T"), ({"T": (0,)}, "T"), ({"model": "nope"}, "model"),
    ({"batch_size": 0}, "batch_size"), ({"dtype": "float16"}, "dtype"),
    ({"device": "tpu"}, "device"), ({"memory": True, "encoder": "morse"}, "encoder"),
])
def test_benchmark_names_the_bad_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        benchmark(**{"T": (1,), "repeats": 1, "warmup": 1, "batch_size": 2, **kwargs})


def test_flowstate_like_is_zeros_for_the_neurons_an_input_drives() -> None:
    rng = np.random.default_rng(0)
    I = rng.normal(0.5, 0.7, size=(7, 3, 5))
    p = make_neuron_params(lam=0.8, v_th=1.0)
    a = flows.FlowState.like(I, 0.8)
    b = flows.FlowState.zeros((3, 5), I.dtype, np, 0.8)
    assert a.v.shape == (3, 5) and a.v.dtype == I.dtype and a.w == 0.8 and a.steps == 0
    flows.lif_forward_flows(I, a, p)
    flows.lif_forward_flows(I, b, p)
    for x, y in ((a.FI(), b.FI()), (a.FO(), b.FO()), (a.sOU, b.sOU)):
        assert np.array_equal(x, y)
    assert flows.FlowState.like(I.astype(np.float32), 1.0).sI.dtype == np.float32


def test_flowstate_like_refuses_an_input_without_time() -> None:
    with pytest.raises(ValueError, match="I"):
        flows.FlowState.like(np.zeros(5), 1.0)
