"""
Chapter 1 -- From the RC circuit to lam
=======================================

Every spiking network in this course runs the same two lines per neuron and step (SSF paper,
Wang et al., ICCV 2023, Eqs. 6-7)::

    u[t] = lam * v[t-1] + I[t]          o[t] = H(u[t] - V_th)      v[t] = reset of u[t]

Where does ``lam`` come from, and what is ``I``?  From a resistor and a capacitor.  The
membrane of a leaky integrate-and-fire neuron is an RC circuit (Gerstner, Kistler, Naud &
Paninski, *Neuronal Dynamics*, Cambridge 2014, Eq. 1.5)::

    tau_m du/dt = -(u - u_rest) + R I(t)         tau_m = R C

Take ``u_rest = 0`` and hold the input current constant over each time step of length ``dt``.
The ODE is then linear with constant forcing on every step, and its **exact** solution over one
step is::

    u[t] = lam u[t-1] + (1 - lam) R I[t]          lam = exp(-dt / tau_m)

**Forward Euler** instead replaces du/dt by (u[t] - u[t-1]) / dt and gets the same form with
``lam = 1 - dt / tau_m`` -- a first-order approximation of the exponential, good when
``dt << tau_m`` and wrong (even negative, for dt > tau_m) when it is not.

The library writes the update as ``u[t] = lam v[t-1] + I[t]`` (``functional.lif_forward``,
SSF Eqs. 6-7 / 16-17): the input is **not** multiplied by ``(1 - lam) R``.  That factor is a
constant per layer, so the weights that produce ``I`` absorb it: ``I_lib[t] = (1 - lam) R I[t]``.

Other libraries make other choices, and a number that means one thing in snnTorch means another
in SpikingJelly or Norse.  The last part of the chapter writes each library's documented update
rule as a few lines of NumPy and checks the dictionary numerically against ``lif_forward``:

====================================================  =====================================
library and neuron                                    pysnn_ref (``lif_forward``)
====================================================  =====================================
snnTorch ``Leaky(beta, reset_mechanism="zero")``      ``lam = beta``, hard reset, same I
snnTorch ``Leaky(beta)`` (default "subtract")         **not the same neuron** for beta < 1:
                                                      it subtracts V_th after the decay
SpikingJelly ``LIFNode(tau, v_reset=0.)``             ``lam = 1 - 1/tau``, hard, ``I = X / tau``
                                                      (``decay_input=True``, its default)
SpikingJelly ``LIFNode(..., v_reset=None)``           the same with the soft reset
Norse ``LIFBoxParameters(tau_mem_inv)``, ``dt``       ``lam = 1 - dt tau_mem_inv``, hard,
                                                      ``I = dt tau_mem_inv X``
Norse ``LIFParameters`` (current-based)               the above with ``tau_syn_inv = 1/dt``
                                                      = input one step late (chapter 9)
====================================================  =====================================

Sources (the update rules as the libraries document and implement them):

* snnTorch ``Leaky``: https://snntorch.readthedocs.io/en/latest/snn.neurons_leaky.html and
  GitHub ``jeshraghian/snntorch``, ``snntorch/_neurons/leaky.py`` (``_base_sub``,
  ``_base_zero``).
* SpikingJelly ``LIFNode``: https://spikingjelly.readthedocs.io/zh_CN/latest/ (API:
  ``spikingjelly.activation_based.neuron``) and GitHub ``fangwei123456/spikingjelly``,
  the ``spikingjelly/activation_based/neuron`` module (``LIFNode.neuronal_charge``: H[t] = V[t-1] +
  (X[t] - (V[t-1] - V_reset)) / tau with ``decay_input=True``; ``neuronal_fire``,
  ``neuronal_reset``).
* Norse: https://norse.github.io/norse/ (API: ``norse.torch.functional.lif_box``,
  ``norse.torch.functional.lif``) and GitHub ``norse/norse``,
  ``norse/torch/functional/lif_box.py`` (``lif_box_feed_forward_step``) and ``lif.py``
  (``lif_feed_forward_step``).

Run:  python tutorials/01_rc_circuit_to_lambda.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

# %%
# Setup
# -----
# Everything below is NumPy and SciPy; the only library function used is
# ``pysnn_ref.functional.lif_forward``.

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.integrate import solve_ivp

from pysnn_ref.functional import lif_forward

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
Pair = tuple[np.ndarray, np.ndarray]     # (spikes, membrane before reset), each (T, N)
TAU, R = 10.0, 1.0                    # membrane time constant (ms) and resistance
RATIOS = np.array([0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 1.5]) if QUICK else \
    np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0])

# %%
# 1. The RC circuit, solved three ways
# ------------------------------------
# The reference is SciPy's adaptive Runge-Kutta (``solve_ivp``, rtol 1e-10) run separately over
# each step, where the input is constant -- no discretisation formula involved.  Against it we
# put the exact one-step map (lam = exp(-dt/tau)) and forward Euler (lam = 1 - dt/tau), for step
# sizes from dt = 0.01 tau to 2 tau.


def rc_reference(I: np.ndarray, dt: float, u0: float = 0.0) -> np.ndarray:
    """u at the end of every step: tau du/dt = -u + R I[t], I held constant on each step."""
    u, out = u0, np.empty_like(I)
    for t, i_t in enumerate(I):
        sol = solve_ivp(lambda _s, y, i=i_t: (-y + R * i) / TAU, (0.0, dt), [u],
                        rtol=1e-10, atol=1e-12)
        u = out[t] = sol.y[0, -1]
    return out


def rc_discrete(I: np.ndarray, lam: float, u0: float = 0.0) -> np.ndarray:
    """u[t] = lam u[t-1] + (1 - lam) R I[t]: the one-step map, exact or Euler by its lam."""
    u, out = u0, np.empty_like(I)
    for t, i_t in enumerate(I):
        u = out[t] = lam * u + (1 - lam) * R * i_t
    return out


def discretisation_errors(duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Max |u - u_ref| (relative to max |u_ref|) of the exact map and of Euler, per dt/tau."""
    err_exact, err_euler = [], []
    for ratio in RATIOS:
        dt = ratio * TAU
        steps = max(4, int(round(duration / dt)))
        I = rng.uniform(0.0, 2.0, steps)          # a new random current on every step
        ref = rc_reference(I, dt)
        scale = np.max(np.abs(ref))
        err_exact.append(np.max(np.abs(rc_discrete(I, np.exp(-ratio)) - ref)) / scale)
        err_euler.append(np.max(np.abs(rc_discrete(I, 1 - ratio) - ref)) / scale)
    return np.array(err_exact), np.array(err_euler)


err_exact, err_euler = discretisation_errors(duration=(4 if QUICK else 10) * TAU)
print("1. The RC circuit tau du/dt = -u + R I, one step of length dt, vs solve_ivp (rtol 1e-10)")
print("   dt/tau   lam exact   lam Euler   rel. error exact   rel. error Euler")
for r, e1, e2 in zip(RATIOS, err_exact, err_euler, strict=True):
    print(f"   {r:5.2f}   {np.exp(-r):9.4f}   {1 - r:9.4f}   {e1:16.1e}   {e2:16.1e}")
assert np.all(err_exact < 1e-7), err_exact                  # exact at every step size
assert np.all(np.diff(err_euler) > 0), err_euler            # Euler's error grows with dt/tau
assert err_euler[RATIOS == 0.1][0] > 1e-3 and err_euler[-1] > 0.1
print("   the exponential map is exact (to the ODE solver's tolerance) at any dt; Euler's error "
      "grows with dt/tau,\n   and for dt > tau its lam = 1 - dt/tau is negative: the membrane "
      "oscillates in sign, which no RC circuit does")

# %%
# The figure: lam of both maps and their errors against dt / tau.

fig, ax = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
grid = np.linspace(0, RATIOS[-1], 200)
ax[0].plot(grid, np.exp(-grid), label="exact: lam = exp(-dt/tau)")
ax[0].plot(grid, 1 - grid, "--", label="forward Euler: lam = 1 - dt/tau")
ax[0].axhline(0, color="gray", lw=0.7)
ax[0].set_xlabel("dt / tau_m")
ax[0].set_ylabel("lam (membrane decay per step)")
ax[0].set_title("lam from the RC circuit")
ax[0].legend(fontsize=8)
ax[1].loglog(RATIOS, err_euler, "o-", label="forward Euler")
ax[1].loglog(RATIOS, np.maximum(err_exact, 1e-16), "s-", label="exact map (solver tolerance)")
ax[1].set_xlabel("dt / tau_m")
ax[1].set_ylabel("max |u - u_ref| / max |u_ref|")
ax[1].set_title("one-step map vs a fine ODE solution")
ax[1].legend(fontsize=8)
path = OUT / "01_rc_discretisation.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")

# %%
# 2. The library's convention: I absorbs (1 - lam) R
# --------------------------------------------------
# ``lif_forward(I, lam=..., v_th=..., reset=...)`` computes u[t] = lam v[t-1] + I[t] (SSF Eq. 6;
# v is u after the reset of the step before).  Feeding it I_lib = (1 - lam) R I gives the RC
# neuron with a threshold checked at the end of every step.  We check that against the ODE:
# integrate the RC circuit with solve_ivp over each step, fire when u reaches V_th at the end of
# a step, reset (to 0, or by subtracting V_th), go on.  Same spikes, same membrane.


def rc_neuron_reference(I: np.ndarray, dt: float, v_th: float, reset: str) -> Pair:
    """The RC circuit of section 1 with a threshold at the end of each step; (o, u)."""
    o, u, v = np.zeros_like(I), np.zeros_like(I), 0.0
    for t in range(len(I)):
        u[t] = rc_reference(I[t:t + 1], dt, u0=v)[0]
        o[t] = float(u[t] >= v_th)
        v = u[t] * (1 - o[t]) if reset == "hard" else u[t] - v_th * o[t]
    return o, u


def check_library_convention(ratio: float, reset: str, steps: int) -> float:
    """Spikes of the ODE neuron = lif_forward((1 - lam) R I, lam = exp(-dt/tau)); returns
    max |u - u_lib|."""
    I = rng.uniform(0.0, 3.0, steps)
    o_ref, u_ref = rc_neuron_reference(I, ratio * TAU, 1.0, reset)
    lam = float(np.exp(-ratio))
    o_lib, cache = lif_forward(((1 - lam) * R * I)[:, None], lam=lam, v_th=1.0, reset=reset)
    assert np.array_equal(o_lib[:, 0], o_ref), (ratio, reset)
    return float(np.max(np.abs(cache.u[:, 0] - u_ref)))


print("\n2. The library's convention u[t] = lam v[t-1] + I[t] (SSF Eqs. 6-7 / 16-17): "
      "I_lib = (1 - lam) R I")
steps = 40 if QUICK else 120
for ratio in (0.1, 0.5, 1.0):
    for reset in ("hard", "soft"):
        du = check_library_convention(ratio, reset, steps)
        print(f"   dt/tau = {ratio:3.1f}, {reset} reset: ODE neuron and lif_forward fire the same "
              f"{steps}-step spike train; max |u - u_lib| = {du:.1e}")
        assert du < 1e-7

# %%
# 3. The dictionary between libraries
# -----------------------------------
# Each function below is one library's documented update rule for one step, run over T steps
# (the sources are listed at the top of the chapter).  Each returns the spikes and the membrane
# before the reset.  Then we ask ``lif_forward`` for the same spikes with the mapped parameters.


def snntorch_leaky(x: np.ndarray, beta: float, threshold: float, reset: str) -> Pair:
    """snnTorch Leaky: reset = H(mem[t-1] - thr) from the previous membrane (never reset in
    place); "subtract": mem[t] = beta mem[t-1] + x[t] - reset thr; "zero" (the code's
    ``_base_zero``): mem[t] = beta (1 - reset) mem[t-1] + x[t]; spk[t] = H(mem[t] - thr) with
    H(0) = 0.  snnTorch's docstring writes the zero reset as U[t+1] = beta U[t] + I[t+1] -
    R (beta U[t] + I[t+1]), which also drops the new input: ``reset="zero (docstring)"``."""
    mem, spk, m = np.zeros_like(x), np.zeros_like(x), np.zeros(x.shape[1:])
    for t in range(len(x)):
        r = (m - threshold > 0).astype(x.dtype)
        if reset == "subtract":
            m = beta * m + x[t] - r * threshold
        elif reset == "zero":
            m = beta * (1 - r) * m + x[t]
        else:                  # "zero (docstring)": R (beta U + I) removed, the new input too
            m = (1 - r) * (beta * m + x[t])
        mem[t], spk[t] = m, (m - threshold > 0)
    return spk, mem


def spikingjelly_lif(x: np.ndarray, tau: float, v_th: float, v_reset: float | None,
                     decay_input: bool = True) -> Pair:
    """SpikingJelly LIFNode: charge H = V + (X - (V - V_reset)) / tau (decay_input=True) or
    H = V - (V - V_reset) / tau + X (False), V_reset = 0 for the soft reset (v_reset=None);
    S = H(H - V_th) with H(0) = 1; V = H (1 - S) + V_reset S, or V = H - V_th S."""
    h_out, spk, V = np.zeros_like(x), np.zeros_like(x), np.zeros(x.shape[1:])
    vr = 0.0 if v_reset is None else v_reset
    for t in range(len(x)):
        H = V + (x[t] - (V - vr)) / tau if decay_input else V - (V - vr) / tau + x[t]
        S = (H - v_th >= 0).astype(x.dtype)
        V = H - v_th * S if v_reset is None else H * (1 - S) + vr * S
        h_out[t], spk[t] = H, S
    return spk, h_out


def norse_lif_box(x: np.ndarray, tau_mem_inv: float, dt: float, v_th: float) -> Pair:
    """Norse lif_box_feed_forward_step (v_leak = v_reset = 0): v += dt tau_mem_inv (x - v);
    z = H(v - v_th) with H(0) = 0; v = (1 - z) v."""
    vd, spk, v = np.zeros_like(x), np.zeros_like(x), np.zeros(x.shape[1:])
    for t in range(len(x)):
        v = v + dt * tau_mem_inv * (x[t] - v)
        z = (v - v_th > 0).astype(x.dtype)
        vd[t], spk[t], v = v, z, (1 - z) * v
    return spk, vd


def norse_lif(x: np.ndarray, tau_mem_inv: float, tau_syn_inv: float, dt: float,
              v_th: float) -> Pair:
    """Norse lif_feed_forward_step (v_leak = v_reset = 0): v += dt tau_mem_inv (i - v) with the
    *previous* synaptic current i; i = (1 - dt tau_syn_inv) i + x[t]; z = H(v - v_th), v reset."""
    vd, spk = np.zeros_like(x), np.zeros_like(x)
    v, i = np.zeros(x.shape[1:]), np.zeros(x.shape[1:])
    for t in range(len(x)):
        v = v + dt * tau_mem_inv * (i - v)
        i = (1 - dt * tau_syn_inv) * i + x[t]
        z = (v - v_th > 0).astype(x.dtype)
        vd[t], spk[t], v = v, z, (1 - z) * v
    return spk, vd


def compare(name: str, theirs: Pair, I: np.ndarray, lam: float,
            reset: str) -> tuple[int, float]:
    """(#spikes that differ, max |u - u_lib|) between a library rule and lif_forward."""
    o, cache = lif_forward(I, lam=lam, v_th=1.0, reset=reset)
    n_diff = int(np.sum(o != theirs[0]))
    du = float(np.max(np.abs(cache.u - theirs[1])))
    print(f"   {name:62s} {int(o.sum()):6d} spikes, {n_diff:5d} differ, max|du| = {du:.1e}")
    return n_diff, du


# %%
# Run every rule on the same random input (T steps x N neurons, float64) and compare.

T, N = (50, 200) if QUICK else (100, 2000)
x = rng.normal(0.35, 0.6, (T, N))
beta, tau, dt, tau_mem_inv = 0.8, 2.5, 1e-3, 150.0
xn = 4 * x                                 # Norse's dt tau_mem_inv = 0.15 scales the input down
xn_late = np.concatenate([np.zeros((1, N)), xn[:-1]])        # the input one step later
print(f"\n3. One input x (T = {T}, {N} neurons), each library's rule vs lif_forward (V_th = 1)")
rows = {
    "snnTorch Leaky(beta, zero)  = lam beta, hard, I = x":
        (snntorch_leaky(x, beta, 1.0, "zero"), x, beta, "hard"),
    "SpikingJelly LIFNode(tau, v_reset=0) = lam 1-1/tau, hard, x/tau":
        (spikingjelly_lif(x, tau, 1.0, 0.0), x / tau, 1 - 1 / tau, "hard"),
    "SpikingJelly LIFNode(tau, v_reset=None) = soft, x/tau":
        (spikingjelly_lif(x, tau, 1.0, None), x / tau, 1 - 1 / tau, "soft"),
    "SpikingJelly decay_input=False = lam 1-1/tau, I = x":
        (spikingjelly_lif(x, tau, 1.0, 0.0, decay_input=False), x, 1 - 1 / tau, "hard"),
    "Norse LIFBox(tau_mem_inv), dt = lam 1-dt/tau, dt x/tau":
        (norse_lif_box(xn, tau_mem_inv, dt, 1.0), dt * tau_mem_inv * xn, 1 - dt * tau_mem_inv,
         "hard"),
    "Norse LIF(tau_syn_inv = 1/dt) = LIFBox, input 1 step late":
        (norse_lif(xn, tau_mem_inv, 1 / dt, dt, 1.0), dt * tau_mem_inv * xn_late,
         1 - dt * tau_mem_inv, "hard"),
    "snnTorch Leaky(beta=1, subtract) = IF, soft reset":
        (snntorch_leaky(x, 1.0, 1.0, "subtract"), x, 1.0, "soft"),
}
for name, (theirs, I, lam, reset) in rows.items():
    n_diff, du = compare(name, theirs, I, lam, reset)
    assert n_diff == 0 and du < 1e-12 and theirs[0].sum() > 0, name

# %%
# The one that does not map: snnTorch's default subtract reset with beta < 1.  snnTorch
# subtracts the threshold *after* the decay (mem = beta mem + x - thr), the library (and
# SpikingJelly's soft reset, and SSF Eq. 16) *before* it (u = lam (u - V_th) + I, i.e. it
# subtracts lam V_th).  No choice of lam, V_th or input scaling makes the two equal for every
# input: they are different neurons, and a network trained in one does not transfer bit-exactly.

n_diff, _ = compare("snnTorch Leaky(beta=0.8, subtract) vs soft reset, lam=0.8",
                    snntorch_leaky(x, beta, 1.0, "subtract"), x, beta, "soft")
assert n_diff > 0
print("   -> not the same neuron: snnTorch's subtract reset removes V_th after the decay, "
      "SSF Eq. 16 lam V_th")
n_diff, _ = compare("snnTorch zero reset as its docstring writes it vs hard reset",
                    snntorch_leaky(x, beta, 1.0, "zero (docstring)"), x, beta, "hard")
assert n_diff > 0
print("   -> the docstring's zero reset also drops the input of the step after a spike; the "
      "code's (above) keeps it, as SSF Eq. 6 does")

# %%
# Three membranes, one neuron: the snnTorch ("zero"), SpikingJelly and Norse rules, each fed its
# own scaling of the same input, on top of lif_forward with the mapped parameters.

fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
k = 0
o_lib, c_lib = lif_forward(x / tau, lam=1 - 1 / tau, v_th=1.0, reset="hard")
ax.plot(c_lib.u[:, k], "k-", lw=3, alpha=0.3, label="pysnn_ref lif_forward (lam = 1 - 1/tau)")
ax.plot(spikingjelly_lif(x, tau, 1.0, 0.0)[1][:, k], ".", label="SpikingJelly LIFNode rule")
ax.plot(snntorch_leaky(x / tau, 1 - 1 / tau, 1.0, "zero")[1][:, k], "x", ms=4,
        label="snnTorch Leaky(beta = 1 - 1/tau, zero) on x / tau")
ax.plot(norse_lif_box(x, 1 / (tau * dt), dt, 1.0)[1][:, k], "+", ms=6,
        label="Norse LIFBox(tau_mem_inv = 1/(tau dt)) rule")
spikes = np.flatnonzero(o_lib[:, k])
ax.plot(spikes, np.full(spikes.size, 1.05), "r|", ms=12, label="spikes")
ax.axhline(1.0, color="r", ls="--", lw=0.8)
ax.set_xlabel("time step t")
ax.set_ylabel("membrane before reset u[t]")
ax.set_title(f"one neuron, four libraries' rules, mapped parameters (tau = {tau})")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
path = OUT / "01_library_dictionary.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")

# %%
# 4. Optional: the real libraries
# -------------------------------
# When PyTorch and snnTorch / SpikingJelly are installed, run their neurons on the same input and
# compare with ``lif_forward`` (nothing here is required by the rest of the course).


def real_snntorch(x: np.ndarray, beta: float) -> np.ndarray:
    """Spikes of snntorch.Leaky(beta, reset_mechanism="zero") on x (float64)."""
    import snntorch
    import torch

    neuron = snntorch.Leaky(beta=beta, reset_mechanism="zero")
    mem, out = neuron.init_leaky(), []
    for t in range(len(x)):
        spk, mem = neuron(torch.from_numpy(x[t]), mem)
        out.append(spk.detach().numpy())
    return np.stack(out)


def real_spikingjelly(x: np.ndarray, tau: float) -> np.ndarray:
    """Spikes of spikingjelly LIFNode(tau, decay_input=True, v_reset=0.) in multi-step mode."""
    import torch
    from spikingjelly.activation_based import neuron

    node = neuron.LIFNode(tau=tau, decay_input=True, v_reset=0.0, step_mode="m")
    return node(torch.from_numpy(x)).detach().numpy()


have = {m: importlib.util.find_spec(m) is not None for m in ("torch", "snntorch", "spikingjelly")}
# SpikingJelly before 0.0.0.0.13 has no ``activation_based`` package (its API was clock_driven)
have["spikingjelly"] = have["spikingjelly"] and importlib.util.find_spec(
    "spikingjelly.activation_based") is not None
print("\n4. The real libraries (optional)")
if have["torch"] and have["snntorch"]:
    o_lib, _ = lif_forward(x, lam=beta, v_th=1.0, reset="hard")
    o_real = real_snntorch(x, beta)
    n = int(np.sum(o_real != o_lib))
    n_doc = int(np.sum(o_real != snntorch_leaky(x, beta, 1.0, "zero (docstring)")[0]))
    print(f"   snntorch.Leaky(beta={beta}, reset_mechanism='zero') vs lif_forward: {n} spikes "
          f"differ ({n_doc} vs the docstring's rule, which this version "
          f"{'follows' if n_doc == 0 else 'does not follow'})")
    assert n == 0 or n_doc == 0      # the installed version is one of the two documented rules
else:
    print("   skipped: snntorch not installed")
if have["torch"] and have["spikingjelly"]:
    o_lib, _ = lif_forward(x / tau, lam=1 - 1 / tau, v_th=1.0, reset="hard")
    n = int(np.sum(real_spikingjelly(x, tau) != o_lib))
    print(f"   spikingjelly LIFNode(tau={tau}, v_reset=0.) vs lif_forward: {n} spikes differ")
    assert n == 0
else:
    print("   skipped: spikingjelly (with spikingjelly.activation_based) not installed")

# %%
# Verification
# ------------

print(f"\nVerification (asserted above): the exponential one-step map equals the RC circuit's ODE "
      f"solution (rel. error < 1e-7) for dt/tau in [{RATIOS[0]}, {RATIOS[-1]}], Euler's error "
      "grows with dt/tau;\n   the ODE neuron = lif_forward((1 - lam) R I, lam = exp(-dt/tau)) "
      "spike for spike (SSF Eqs. 6-7, 16-17), hard and soft reset;\n   snnTorch (zero reset), "
      "SpikingJelly (hard, soft, decay_input False) and Norse (LIFBox, LIF with tau_syn = dt) "
      "rules = lif_forward with the mapped lam and input, every spike;\n   snnTorch's subtract "
      "reset with beta < 1, and the zero reset as its docstring writes it, differ (shown)")
print("Chapter 1 done: lam = exp(-dt/tau_m), and the weights absorb (1 - lam) R.")
