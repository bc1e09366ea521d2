"""
Chapter 14 -- The T-independent family: DSR, OTTT, SLTT and rate-based BP beside BPTT, ASF and SSF
==================================================================================================

BPTT's backward (chapter 5, SSF Eqs. 8-10) runs the neuron's recurrence backwards through all T
steps, so it keeps every membrane u[t] (memory ~ T) and walks every step (time ~ T).  ASF and
SSF (chapters 11-12) collapse time into accumulated flows.  Four later methods avoid the backward
recurrence in other ways; each is BPTT with some terms dropped, and this chapter shows which, in
code.  Write the exact recurrence of one LIF layer (hard reset; soft: -lam V_th and lam)::

    dL/do[t] = g[t] + dL/du[t+1] (-lam u[t])                         g[t]: from the layer above
    dL/du[t] = dL/do[t] sigma'(u[t] - V_th) + dL/du[t+1] lam (1 - o[t])
    dL/dI[t] = dL/du[t]                 dW = sum_t dL/dI[t] x[t]^T   (SSF Eqs. 8-10)

* **SLTT** (Meng et al., "Towards Memory- and Time-Efficient Backpropagation for Training
  Spiking Neural Networks", ICCV 2023) drops every term with dL/du[t+1]: the *temporal* path
  through the membrane.  What is left is the per-step *spatial* term,
  ``dL/dI[t] = g[t] sigma'(u[t] - V_th)``, computed right after step t, so nothing of length T
  is kept.  SLTT-K back-propagates only K of the T steps.
* **OTTT** (Xiao et al., "Online Training Through Time for Spiking Neural Networks", NeurIPS
  2022) drops the same terms, but its weight layers take their gradient from the presynaptic
  trace a_hat[t] = lam a_hat[t-1] + o[t] instead of o[t]: dW^l += delta^(l+1)[t] a_hat^l[t]^T
  (delta = dL/dI of the layer above) -- some of the dropped temporal dependence, carried
  forward in time instead of backward.
* **Rate-based BP** (Yu et al., "Advancing Training Efficiency of Deep Spiking Neural Networks
  through Rate-based Backpropagation", NeurIPS 2024) back-propagates once through the
  time-averaged network: rates r = mean_t o[t], mean currents Ibar = W r_below + b, and per neuron
  the eligibility e = dr/dc for a shift c of every step's input (accumulated in the forward).
  For one hidden layer with a constant input and a loss on the time-averaged output it *is*
  BPTT (shown below).
* **DSR** (Meng et al., "Training High-Performance Low-Latency SNNs by Differentiation on Spike
  Representation", CVPR 2022) back-propagates through the rate's differentiable mapping
  a = clamp(Ibar_w, 0, V_th) of the (lam-weighted) mean input: gain 1 inside the clamp, 0
  outside, no surrogate, no time.

The library trains with all seven as methods (``make_method(name)``, ``python -m
pysnn_ref.train --method dsr | rate | ottt | sltt``); to show what OTTT and SLTT do, this chapter
writes their per-step loop itself from the functional level (``functional.online``:
``online_forward`` carries the neuron state between calls, ``online_backward`` is the spatial
term).  Three measurements: the cosine of each method's weight gradient with BPTT's as T
grows, peak memory and time of one training step as T grows (tracemalloc), and a short training
run of every method on the digits.  The papers' bodies were not available to the library's
authors (their formulas are the authors' public code), so no equation numbers are cited for
them; ASF is ASF Eqs. 7-12, SSF is SSF Eqs. 11-19.

Run:  python tutorials/14_method_family.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

# %%
# Setup
# -----

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data, nn
from pysnn_ref.functional import lif_backward, lif_forward, make_neuron_params
from pysnn_ref.functional.dsr import dsr_backward, dsr_forward
from pysnn_ref.functional.linear import LinearCache, linear_backward, linear_forward
from pysnn_ref.functional.loss import accuracy, sdt_loss_backward, sdt_loss_forward
from pysnn_ref.functional.online import OnlineState, online_backward, online_forward
from pysnn_ref.gradcheck import cosine, method_gradients, rel_error
from pysnn_ref.methods import make_method
from pysnn_ref.optim import Adam

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
threadpool_limits(limits=1, user_api="blas")
LAM, V_TH = 0.5, 1.0
FLOW = ("asf", "ssf", "dsr", "rate")          # the methods make_method knows, besides bptt
ONLINE = ("ottt", "sltt")                     # written here from functional.online


def make_net(sizes: tuple[int, ...], seed: int = 0, dtype: type = np.float32) -> nn.Sequential:
    """Linear -> LIF (soft reset: DSR defines no other) -> ... -> Linear readout."""
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, rng=rng, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(nn.LIF(lam=LAM, v_th=V_TH, reset="soft", surrogate="triangle"))
    return nn.Sequential(*layers)


# %%
# 1. SLTT and OTTT are BPTT without the temporal terms
# ----------------------------------------------------
# The BPTT recurrence above as a loop with one switch: ``temporal=False`` drops every term that
# carries dL/du[t+1].  With the switch on it is the library's ``lif_backward``; with it off it is
# ``online_backward`` (SLTT's and OTTT's neuron backward).  At T = 1 there is no temporal term,
# so the two coincide: OTTT = SLTT = BPTT.


def bptt_neuron(do_next: np.ndarray, u: np.ndarray, o: np.ndarray, sg: np.ndarray,
                temporal: bool = True) -> np.ndarray:
    """dL/dI of a soft-reset LIF layer from g = dL/do (SSF Eqs. 8-10, soft reset: dv/do =
    -V_th, dv/du = 1); ``temporal=False`` drops every dL/du[t+1] term (SLTT / OTTT)."""
    dI = np.zeros_like(u)
    du_next = np.zeros_like(u[0])
    for t in reversed(range(len(u))):
        do = do_next[t] + (du_next * LAM * (-V_TH) if temporal else 0)
        dI[t] = du_next = do * sg[t] + (du_next * LAM if temporal else 0)
    return dI


def section_derivation(rng: np.random.Generator) -> None:
    print("1. The BPTT recurrence (SSF Eqs. 8-10) with and without its temporal terms")
    p = make_neuron_params(lam=LAM, v_th=V_TH, reset="soft", surrogate="triangle")
    for T in (1, 6):
        I = rng.normal(0.5, 1.0, (T, 8, 20))
        g = rng.standard_normal(I.shape)
        o, cache = lif_forward(I, lam=LAM, v_th=V_TH, reset="soft", surrogate="triangle")
        sg = p.surrogate.grad(cache.u - V_TH)
        e_bptt = rel_error(bptt_neuron(g, cache.u, o, sg), lif_backward(g, cache))
        _, _, ocache, _ = online_forward(I, p)
        e_online = rel_error(bptt_neuron(g, cache.u, o, sg, temporal=False),
                             online_backward(g, ocache))
        gap = rel_error(lif_backward(g, cache), online_backward(g, ocache))
        print(f"   T = {T}: loop = lif_backward ({e_bptt:.0e}); loop without the temporal terms "
              f"= online_backward ({e_online:.0e}); BPTT vs SLTT/OTTT rel. difference {gap:.2f}")
        assert e_bptt < 1e-12 and e_online < 1e-12
        assert (gap < 1e-12) if T == 1 else (gap > 1e-2)


section_derivation(np.random.default_rng(0))

# %%
# 2. OTTT and SLTT as a per-step loop over a whole network
# --------------------------------------------------------
# Forward one step through every layer (``online_forward`` carries each layer's membrane, and
# for OTTT its trace a_hat), then back-propagate that step's output gradient right away:
# ``online_backward`` through each neuron and ``linear_backward`` through each weight layer --
# given, for OTTT, a cache whose input is the trace (so dW = delta a_hat^T, while dx = delta W is
# unchanged).  The first layer sees the image itself (OTTT's authors do not trace it).  Nothing of
# length T is kept.  ``dy_of(t, y_t)`` says what each step's output gradient is.


def online_step(net: nn.Sequential, x_t: np.ndarray, states: list[OnlineState],
                ottt: bool) -> tuple[np.ndarray, list, list]:
    """One forward step through every layer: y[t] (1, B, C), the input each weight layer takes
    its weight gradient from (OTTT: the trace), and each neuron layer's cache."""
    lins, neurons = net.layers[0::2], net.layers[1::2]
    h = grad_in = x_t
    ins, ncaches = [], []
    for i, lin in enumerate(lins):
        ins.append(grad_in)
        I, _ = linear_forward(h, lin.W.data, lin.b.data)
        if i == len(neurons):
            return I, ins, ncaches
        o, a_hat, ncache, states[i] = online_forward(I, neurons[i].p, states[i])
        ncaches.append(ncache)
        h, grad_in = o, (a_hat if ottt else o)
    raise AssertionError("the network must end with a Linear readout")


def online_step_backward(net: nn.Sequential, dy: np.ndarray, ins: list, ncaches: list) -> None:
    """That step's backward, added into the parameters' grads: linear_backward through each
    weight layer (input: o, or OTTT's trace), online_backward through each neuron."""
    lins = net.layers[0::2]
    d = dy
    for i in reversed(range(len(lins))):
        dx, dW, db = linear_backward(d, LinearCache(ins[i], lins[i].W.data, True),
                                     need_dx=i > 0)
        lins[i].W.grad += dW
        lins[i].b.grad += db
        if i:
            d = online_backward(dx, ncaches[i - 1])


def online_grads(net: nn.Sequential, x: np.ndarray, T: int, dy_of, ottt: bool) -> np.ndarray:
    """OTTT_A / SLTT over a batch: per step forward, then that step's backward with output
    gradient ``dy_of(t, y_t)``; gradients summed over the steps.  Returns y (T, B, C)."""
    B = x.shape[0]
    X = data.DirectEncoder().encode(x, T)
    states = [OnlineState.zeros((B, n.W.data.shape[0]), x.dtype, trace=ottt)
              for n in net.layers[0:-1:2]]
    net.zero_grad()
    ys = []
    for t in range(T):
        y_t, ins, ncaches = online_step(net, X[t:t + 1], states, ottt)
        online_step_backward(net, dy_of(t, y_t), ins, ncaches)
        ys.append(y_t[0])
    return np.stack(ys)


def all_weight_grads(net: nn.Sequential) -> np.ndarray:
    """Every weight matrix's gradient, flattened into one vector (biases left out)."""
    return np.concatenate([p.grad.ravel() for k, p in net.named_parameters().items()
                           if k.endswith("W")])


def grads_of(method: str, net: nn.Sequential, x: np.ndarray, labels: np.ndarray,
             T: int) -> np.ndarray:
    """One method's weight gradient of the SDT loss (TET Eq. 7) on one batch.  OTTT / SLTT get
    BPTT's per-step output gradient dL/dy[t] (the same forward), so that only their backward
    differs."""
    if method in ONLINE:
        Y = make_method("bptt").forward(net, x, T, data.DirectEncoder())
        dy = sdt_loss_backward(sdt_loss_forward(Y, labels)[1])
        y_online = online_grads(net, x, T, lambda t, _y: dy[t:t + 1], method == "ottt")
        assert np.allclose(y_online, Y, atol=1e-5), "online forward != BPTT forward"
        return all_weight_grads(net)
    _, g = method_gradients(net, method, x, labels, T=T, encoder=data.DirectEncoder())
    return np.concatenate([v.ravel() for k, v in g.items() if k.endswith("W")])


# %%
# 3. Rate-based BP is BPTT, where time averages are exact
# -------------------------------------------------------
# One hidden layer, a constant (direct-encoded) input and a loss on the time-averaged output:
# BPTT's first-layer gradient is (sum_t dL/dI[t]) x^T, and with the same dL/do at every step,
# sum_t dL/dI[t] = T g e with e = dr/dc -- rate-BP's eligibility.  The readout's gradient is
# T dy r^T for both.  So the two agree to rounding (float64); with a second hidden layer the input
# of layer 2 varies in time and they part.

ds = data.load_dataset("digits")
X_ALL = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float64)
Y_ALL = ds.y_train


def section_rate_equals_bptt() -> None:
    print("\n3. Rate-based BP = BPTT with one hidden layer, direct input, SDT loss (float64)")
    x, labels = X_ALL[:32], Y_ALL[:32]
    for sizes in ((64, 40, 10), (64, 40, 30, 10)):
        net = make_net(sizes, seed=1, dtype=np.float64)
        c = cosine(grads_of("rate", net, x, labels, 6), grads_of("bptt", net, x, labels, 6))
        print(f"   network {sizes}: cosine(rate-BP, BPTT) = {c:.12f}")
        if len(sizes) == 3:
            assert c > 1 - 1e-10, c
        else:
            assert c < 1 - 1e-6, c


section_rate_equals_bptt()

# %%
# DSR's backward, by hand: for IF neurons (lam = 1) the representation is the plain mean input
# Ibar and the gradient of a = clamp(Ibar, 0, V_th) reaches every step's current equally,
# dL/dI[t] = 1[0 <= Ibar <= V_th] (sum_s dL/do[s]) / T -- no surrogate, no recursion over time.


def section_dsr_is_a_clamp(rng: np.random.Generator) -> None:
    T = 8
    I = rng.normal(0.4, 0.8, (T, 16, 30))
    g = rng.standard_normal(I.shape)
    _, cache = dsr_forward(I, lam=1.0, v_th=V_TH)
    Ibar = I.mean(axis=0)
    inside = (Ibar >= 0) & (Ibar <= V_TH)
    by_hand = np.broadcast_to(inside * g.sum(axis=0) / T, I.shape)
    err = rel_error(dsr_backward(g, cache)[0], by_hand)
    print(f"   DSR (IF, T = {T}): the cache's Ibar = mean_t I[t] "
          f"({rel_error(cache.Ibar, Ibar):.0e}); dsr_backward = 1[0 <= Ibar <= V_th] "
          f"sum_s g[s] / T ({err:.0e}); {inside.mean():.0%} of the neurons inside the clamp")
    assert rel_error(cache.Ibar, Ibar) < 1e-12 and err < 1e-12


section_dsr_is_a_clamp(np.random.default_rng(4))

# %%
# 4. Gradient cosine with BPTT as T grows
# ---------------------------------------
# One network (64-128-128-10, soft-reset LIF, lam = 0.5), one batch of 64 digits, the SDT loss;
# for each T every method's weight gradient (all three weight matrices) against BPTT's.

T_LIST = (1, 2, 4) if QUICK else (1, 2, 4, 8, 16, 32)
METHODS = ("asf", "ssf", "dsr", "rate", "ottt", "sltt")


def section_cosines() -> dict[str, list[float]]:
    print("\n4. Cosine of each method's weight gradient with BPTT's (SDT loss, TET Eq. 7)")
    net = make_net((64, 128, 128, 10), seed=2)
    x, labels = ds.x_train.reshape(-1, 64)[:64], ds.y_train[:64]
    cos: dict[str, list[float]] = {m: [] for m in METHODS}
    for T in T_LIST:
        ref = grads_of("bptt", net, x, labels, T)
        for m in METHODS:
            cos[m].append(cosine(grads_of(m, net, x, labels, T), ref))
        print(f"   T = {T:2d}: " + "  ".join(f"{m} {cos[m][-1]:.3f}" for m in METHODS))
    for m in ("ottt", "sltt", "rate"):
        assert cos[m][0] > 1 - 1e-5, (m, cos[m][0])     # T = 1: no temporal term to drop
    for m in METHODS:
        assert min(cos[m]) > 0.2, (m, cos[m])           # every method points BPTT's way
    return cos


cosines = section_cosines()

fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for m in METHODS:
    ax.plot(T_LIST, cosines[m], "o-", label=m)
ax.set_xscale("log", base=2)
ax.set_xlabel("time steps T")
ax.set_ylabel("cosine with BPTT's weight gradient")
ax.set_title("how close each method's gradient is to BPTT's (digits, 64-128-128-10)")
ax.legend(fontsize=8)
path = OUT / "14_cosine_vs_T.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")

# %%
# 5. Memory and time of one training step as T grows
# --------------------------------------------------
# Peak memory of NumPy allocations (``tracemalloc``) and wall time of one training step (forward
# + backward; batch 128, 64-256-256-10, or in quick mode batch 64, 64-128-128-10).  BPTT keeps
# every layer's input and membrane at every step; ASF, SSF, DSR and rate-BP stream the input
# ``DEFAULT_TIME_CHUNK`` = 4 steps at a time and keep per-neuron sums (so T starts at 4 here);
# OTTT and SLTT keep one step.  Times depend on the machine and its load: printed and drawn, not
# asserted.

T_COST = (4, 8) if QUICK else (4, 8, 16, 32)         # from one full time chunk (4) on
COST_SIZES, COST_BATCH = ((64, 128, 128, 10), 64) if QUICK else ((64, 256, 256, 10), 128)
COST_METHODS = ("bptt", *METHODS)


def train_step(method: str, net: nn.Sequential, x: np.ndarray, labels: np.ndarray,
               T: int) -> None:
    """One forward + backward (no optimiser step): the SDT loss for the methods of
    make_method, each step's own loss CE(y[t]) / T for OTTT / SLTT (online)."""
    if method in ONLINE:
        def dy_of(t: int, y_t: np.ndarray) -> np.ndarray:
            return sdt_loss_backward(sdt_loss_forward(y_t, labels)[1]) / T
        online_grads(net, x, T, dy_of, method == "ottt")
        return
    m = make_method(method)
    net.zero_grad()
    _, cache = sdt_loss_forward(m.forward(net, x, T, data.DirectEncoder()), labels)
    m.backward(net, sdt_loss_backward(cache))


def measure(method: str, net: nn.Sequential, x: np.ndarray, labels: np.ndarray,
            T: int) -> tuple[float, float]:
    """(peak MiB under tracemalloc, seconds without it) of one training step."""
    train_step(method, net, x, labels, T)                   # warm-up (and Numba's first call)
    t0 = time.perf_counter()
    train_step(method, net, x, labels, T)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    train_step(method, net, x, labels, T)
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return peak, seconds


def section_cost() -> tuple[dict, dict]:
    print(f"\n5. One training step: peak memory (tracemalloc) and time vs T, "
          f"{'-'.join(map(str, COST_SIZES))}, batch {COST_BATCH}")
    net = make_net(COST_SIZES, seed=3)
    x, labels = ds.x_train.reshape(-1, 64)[:COST_BATCH], ds.y_train[:COST_BATCH]
    mem: dict[str, list[float]] = {m: [] for m in COST_METHODS}
    sec: dict[str, list[float]] = {m: [] for m in COST_METHODS}
    for T in T_COST:
        for m in COST_METHODS:
            peak, s = measure(m, net, x, labels, T)
            mem[m].append(peak)
            sec[m].append(s)
        print(f"   T = {T:2d}: " + "  ".join(f"{m} {mem[m][-1]:.2f} MiB/{sec[m][-1] * 1e3:.0f} ms"
                                          for m in COST_METHODS))
    growth = {m: mem[m][-1] / mem[m][0] for m in COST_METHODS}
    print(f"   memory growth from T = {T_COST[0]} to {T_COST[-1]}: "
          + ", ".join(f"{m} x{g:.2f}" for m, g in growth.items()))
    assert growth["bptt"] > 0.5 * T_COST[-1] / T_COST[0], growth
    for m in METHODS:
        assert growth[m] < 1.25, (m, growth[m])            # nothing of length T is kept
    return mem, sec


mem, sec = section_cost()
fig, ax = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for m in COST_METHODS:
    ax[0].plot(T_COST, mem[m], "o-", label=m)
    ax[1].plot(T_COST, np.array(sec[m]) * 1e3, "o-", label=m)
for a, ylabel in ((ax[0], "peak memory of one step (MiB, tracemalloc)"),
                  (ax[1], "time of one step (ms, this machine)")):
    a.set_xscale("log", base=2)
    a.set_xlabel("time steps T")
    a.set_ylabel(ylabel)
    a.legend(fontsize=8)
ax[0].set_title("memory vs T: only BPTT grows")
ax[1].set_title("forward + backward time vs T")
path = OUT / "14_cost_vs_T.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")

# %%
# 6. A short training run per method
# ----------------------------------
# The same network (64-128-128-10), the same data order, Adam (lr 2e-3), T = 4: BPTT, ASF, SSF,
# DSR and rate-BP through ``make_method``, OTTT_A and SLTT through the per-step loop above (each
# step's own loss CE(y[t]) / T, one optimiser step per batch).  Test accuracy is measured with
# the spiking forward of each network.

T_TRAIN, EPOCHS = 4, (1 if QUICK else 4)
N_TRAIN = 384 if QUICK else len(ds.x_train)
TRAIN_METHODS = ("bptt", *METHODS)


def train_method(method: str) -> float:
    """Train a fresh network with one method; returns its test accuracy."""
    net = make_net((64, 128, 128, 10), seed=0)
    opt = Adam(net.parameters(), lr=2e-3)
    m = make_method("bptt" if method in ONLINE else method)
    x_tr, y_tr = ds.x_train.reshape(-1, 64)[:N_TRAIN], ds.y_train[:N_TRAIN]
    for epoch in range(EPOCHS):
        m.begin_epoch(net, epoch)                           # ASF: refresh its scale factor
        for xb, yb in data.iterate_minibatches(x_tr, y_tr, 64, rng=epoch):
            train_step(method, net, xb, yb, T_TRAIN)
            opt.step()
    y = m.forward(net, ds.x_test.reshape(-1, 64), T_TRAIN, data.DirectEncoder())
    return accuracy(y, ds.y_test)


print(f"\n6. Training each method: digits, 64-128-128-10, T = {T_TRAIN}, {EPOCHS} epoch(s) of "
      f"{N_TRAIN} images")
accs = {}
for method in TRAIN_METHODS:
    t0 = time.perf_counter()
    accs[method] = train_method(method)
    print(f"   {method:5s} test accuracy {accs[method]:.3f}  ({time.perf_counter() - t0:.1f} s)")
floor = 0.3 if QUICK else 0.8                                # chance is 0.1
assert all(a >= floor for a in accs.values()), accs

# %%
# Verification
# ------------

print(f"\nVerification (asserted above): BPTT's recurrence (SSF Eqs. 8-10) written as a loop = "
      f"lif_backward, and without its temporal terms = online_backward (OTTT / SLTT; equal at "
      f"T = 1);\n   rate-BP = BPTT (cosine 1 - 1e-10) for one hidden layer with direct input and "
      f"the SDT loss (TET Eq. 7), not for two;\n   DSR's backward = the clamp's gradient "
      f"1[0 <= Ibar <= V_th] sum_s g[s] / T (IF);\n   gradient cosine with BPTT > 0.2 for ASF "
      f"(ASF Eqs. 7-12), SSF (SSF Eqs. 11-19), DSR, rate-BP, OTTT, SLTT at every T, and 1 at "
      f"T = 1 for OTTT, SLTT, rate-BP;\n   BPTT's memory per step grows with T, the six others' "
      f"stays within x1.25 from T = {T_COST[0]} to {T_COST[-1]};\n   every method trains to test "
      f"accuracy >= {floor} (chance 0.1): "
      + ", ".join(f"{m} {a:.3f}" for m, a in accs.items()))
print("Chapter 14 done.")
