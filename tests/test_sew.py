"""SEW connect functions (SEW-ResNet, Fang et al., NeurIPS 2021, Table 1): forward on spikes and
the backward as the exact gradient of g(A, S), by finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref.finite_diff import numerical_gradient, rel_error
from pysnn_ref.functional.sew import sew_connect_backward, sew_connect_forward


@pytest.mark.parametrize("g, table", [
    ("ADD", {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}),
    ("AND", {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1}),
    ("IAND", {(0, 0): 0, (0, 1): 1, (1, 0): 0, (1, 1): 0}),
])
def test_truth_tables_on_spikes(g, table):
    A = np.array([a for a, _ in table], dtype=np.float32)
    S = np.array([s for _, s in table], dtype=np.float32)
    O, _ = sew_connect_forward(A, S, g)
    np.testing.assert_array_equal(O, np.array(list(table.values()), dtype=np.float32))


@pytest.mark.parametrize("g", ["ADD", "AND", "IAND"])
def test_backward_is_the_exact_gradient(g):
    rng = np.random.default_rng(0)
    A, S = rng.uniform(-1, 2, (2, 3, 4, 5, 5)), rng.uniform(-1, 2, (2, 3, 4, 5, 5))
    dO = rng.normal(size=A.shape)
    _, cache = sew_connect_forward(A, S, g)
    dA, dS = sew_connect_backward(dO, cache)
    f = lambda: sew_connect_forward(A, S, g)[0]    # noqa: E731
    assert rel_error(dA, numerical_gradient(f, A, dO)) < 1e-9
    assert rel_error(dS, numerical_gradient(f, S, dO)) < 1e-9


def test_identity_is_reachable():
    """g(A, S) = S with A = 0 (ADD, IAND) or A = 1 (AND): why the SEW block can learn identity."""
    S = (np.random.default_rng(1).random((4, 6)) < 0.5).astype(np.float64)
    for g, a in (("ADD", 0.0), ("IAND", 0.0), ("AND", 1.0)):
        np.testing.assert_array_equal(sew_connect_forward(np.full_like(S, a), S, g)[0], S)


def test_bad_input_names_the_parameter():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="g must be one of"):
        sew_connect_forward(a, a, "OR")
    with pytest.raises(ValueError, match="S"):
        sew_connect_forward(a, np.zeros((2, 4)), "ADD")
    with pytest.raises(ValueError, match="dtype"):
        sew_connect_forward(a, a.astype(np.float32), "AND")
    _, cache = sew_connect_forward(a, a, "AND")
    with pytest.raises(ValueError, match="dO"):
        sew_connect_backward(np.zeros((3, 3)), cache)
