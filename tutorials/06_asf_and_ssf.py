"""Chapter 6 -- Spiking flows: ASF and SSF, and the same network trained three ways.

BPTT (chapter 5) keeps every neuron's membrane u[t] for all T steps and walks back through them:
memory and backward time grow with T.  Two methods replace a neuron's T-step history by a few
running sums -- *spiking flows* -- and back-propagate once, through an equivalent rate network:

**ASF** (accumulated spiking flow; Wu et al., AAAI 2021).  Accumulated flows (Eq. 7)
    FI = sum_t I[t],   FO = sum_t o[t],
and FI of one layer is W FO of the layer below (Eq. 8).  The equivalent network maps FI to FO
linearly, FO = S FI, with one scale factor per layer (Eq. 12)
    S = sum_neurons FO / sum_neurons FI,
so the backward (Eqs. 9-11) is that of a linear network with gains S.

**SSF** (stabilized spiking flow; Wang et al., ICCV 2023).  lam^(T-t)-weighted means
    FI = sum_t lam^(T-t) I[t] / sum_t lam^(T-t),    FO likewise for o[t],
and the average spiking electricity R = sum_t lam^(T-t) o[t] u[t] / (V_th sum_t lam^(T-t) o[t]).
Multiplying the hard-reset recurrence (Eq. 6) by lam^(T-t) and summing gives the *exact*
balance (Eqs. 11-12)
    v[T] = sum_t lam^(T-t) (I[t] - o[t] u[t])       (v[T] = membrane left after the last step)
and, neglecting what is left (< V_th), the mapping FO = max(0, FI / (R V_th)) (Eqs. 13-14),
with dFO/dFI = 0 where R > 2.  Soft reset (Eqs. 16-19): v[T] = sum_t lam^(T-t) (I[t] - V_th
o[t]) and FO = clamp(FI / V_th, 0, 1).  The gradient is dL/dI[t] = dL/dFO dFO/dFI for every t
(Eq. 15).

In both methods the forward pass is the real spiking network (the same spikes as BPTT); only the
backward changes.  It runs once, on one (B, ...) gradient, whatever T is.

This chapter
  1. computes both kinds of flows by hand for a layer of neurons and checks them against the
     library's streaming ``FlowState`` (fed in chunks of time steps);
  2. verifies the electricity balance (SSF Eqs. 12 and 18) to round-off, and plots how well
     the flow mappings (ASF's S, SSF's Eqs. 14 and 19) describe real neurons; S from the
     library's two estimators (``flows.asf_scale_paper``, Eq. 12; ``asf_scale_code``, the
     authors' masked EMA);
  3. builds the equivalent rate network by hand and shows, by finite differences, that the
     ASF and SSF backward passes are its exact gradients; 3b. ASF's output-membrane loss
     (Eq. 6) by hand = ``asf_mse_loss_forward``, its gradient (Eq. 9's first factor) = FD;
  4. trains the same 2-hidden-layer network with BPTT, ASF and SSF -- accuracy and time side by
     side -- and times one backward pass as T grows;
  5. measures how close ASF's and SSF's weight gradients are to BPTT's (cosine similarity,
     ``pysnn_ref.gradcheck.cosine_vs``).
Figure: ``tutorials/out/06_flows.png``.

Run:  python tutorials/06_asf_and_ssf.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from pysnn_ref import data, nn
from pysnn_ref.functional import flows
from pysnn_ref.functional.loss import (
    accuracy,
    asf_mse_loss_backward,
    asf_mse_loss_forward,
    sdt_loss_backward,
    sdt_loss_forward,
)
from pysnn_ref.functional.neuron import lif_forward, make_neuron_params
from pysnn_ref.gradcheck import cosine_vs, numerical_gradient, rel_error
from pysnn_ref.methods import make_method
from pysnn_ref.optim import Adam

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", Path(__file__).resolve().parent / "out"))
T = 4
COLORS = {"bptt": "C0", "asf": "C1", "ssf": "C2"}
EPOCHS = 2 if QUICK else 15


def flows_by_hand(I: np.ndarray, o: np.ndarray, u: np.ndarray, lam: float, v_th: float
                  ) -> dict[str, np.ndarray]:
    """ASF's accumulated and SSF's stabilized flows of neurons (T, N), straight from the papers."""
    Tn = I.shape[0]
    w = lam ** np.arange(Tn - 1, -1, -1.0)[:, None]         # lam^(T-t): the last step weighs 1
    return {
        "ASF FI": I.sum(0), "ASF FO": o.sum(0),              # ASF Eq. 7
        "SSF FI": (w * I).sum(0) / w.sum(), "SSF FO": (w * o).sum(0) / w.sum(),
        "SSF R": np.where(o.sum(0) > 0,
                          (w * o * u).sum(0) / np.maximum(v_th * (w * o).sum(0), 1e-300), 1.0),
    }


def mlp(seed: int = 0, dtype: type = np.float32, sizes: tuple = (64, 128, 128, 10),
        lam: float = 0.5) -> nn.Sequential:
    """Flatten -> [Linear -> LIF] x hidden -> Linear readout."""
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b, rng=rng, dtype=dtype), nn.LIF(lam=lam, v_th=1.0)]
    layers.append(nn.Linear(sizes[-2], sizes[-1], rng=rng, dtype=dtype))
    return nn.Sequential(*layers)


def section_flows(rng: np.random.Generator, axes) -> None:
    """Sections 1-2: flows by hand = FlowState, the balance (SSF Eqs. 12 / 18), the mappings."""
    print("1-2. Spiking flows by hand vs the library's streaming FlowState; the electricity "
          "balance; the flow mappings")
    Tn, N, lam, v_th = 16, 2000, 0.8, 1.0
    I = rng.normal(0.4, 0.6, size=(Tn, N))
    for reset in ("hard", "soft"):
        p = make_neuron_params(lam=lam, v_th=v_th, reset=reset)
        o, cache = lif_forward(I, lam=lam, v_th=v_th, reset=reset)
        mine = flows_by_hand(I, o, cache.u, lam, v_th)
        # The library streams the input a chunk of steps at a time and keeps only running sums
        # (N,) -- nothing of length T.  w is the decay of the sums: 1 for ASF, lam for SSF.
        for method, w in (("ASF", 1.0), ("SSF", lam)):
            st = flows.FlowState.zeros((N,), I.dtype, np, w)
            for t0 in range(0, Tn, 5):                       # chunks of 5, 5, 5, 1 steps
                flows.lif_forward_flows(I[t0:t0 + 5], st, p)
            FI, FO = st.FI(), st.FO()
            if method == "ASF":                              # FlowState holds means; ASF sums
                FI, FO = FI * Tn, FO * Tn
            e = max(rel_error(FI, mine[f"{method} FI"]), rel_error(FO, mine[f"{method} FO"]))
            if method == "SSF":
                e = max(e, rel_error(flows.ssf_R(st, v_th), mine["SSF R"]))
            print(f"   {reset} reset, {method}: FI, FO{', R' if method == 'SSF' else ''} "
                  f"by hand vs FlowState: rel error {e:.1e}")
            assert e < 1e-12

        # The electricity balance, exact: v_last = sum_t lam^(T-1-t) (I[t] - what a spike took)
        u_last, o_last = cache.u[-1], o[-1]
        w = lam ** np.arange(Tn - 1, -1, -1.0)[:, None]
        if reset == "hard":
            v_last = u_last * (1 - o_last)
            balance = (w * (I - o * cache.u)).sum(0)          # SSF Eq. 12
        else:
            v_last = u_last - v_th * o_last
            balance = (w * (I - v_th * o)).sum(0)             # SSF Eq. 18
        err = np.max(np.abs(v_last - balance))
        print(f"   {reset} reset: |v[T] - sum_t lam^(T-t) (I[t] - spike loss)| <= {err:.1e}  "
              f"(SSF Eq. {12 if reset == 'hard' else 18})")
        assert err < 1e-12

        FI, FO, R = mine["SSF FI"], mine["SSF FO"], mine["SSF R"]
        if reset == "hard":
            pred = np.maximum(0, FI / (R * v_th))           # SSF Eq. 14
            ax = axes[0]
            ax.set_xlabel("FI / (R V_th)")
            ax.set_title(f"SSF, hard reset (Eq. 14), lam={lam}")
        else:
            pred = np.clip(FI / v_th, 0, 1)                 # SSF Eq. 19
            ax = axes[1]
            ax.set_xlabel("FI / V_th")
            ax.set_title(f"SSF, soft reset (Eq. 19), lam={lam}")
        print(f"   {reset} reset: SSF mapping vs the real FO: mean |error| "
              f"{np.mean(np.abs(pred - FO)):.3f} (T = {Tn}; what the mapping neglects is "
              "v[T] / sum_t lam^(T-t))")
        ax.plot(pred, FO, ".", ms=2, alpha=0.4)
        ax.plot([0, 1.2], [0, 1.2], "k:", lw=1)
        ax.set_ylabel("FO (real, weighted rate)")

    # ASF with IF neurons (its paper's case): one straight line through all neurons, slope S
    o, _ = lif_forward(I, lam=1.0, v_th=v_th)
    FI, FO = I.sum(0), o.sum(0)
    S = FO.sum() / FI.sum()                                  # ASF Eq. 12
    axes[2].plot(FI, FO, ".", ms=2, alpha=0.4)
    xs = np.linspace(FI.min(), FI.max(), 2)
    axes[2].plot(xs, S * xs, "k:", lw=1, label=f"FO = S FI, S = {S:.2f}")
    axes[2].set_xlabel("FI = sum_t I[t]")
    axes[2].set_ylabel("FO = sum_t o[t]")
    axes[2].set_title(f"ASF, IF neurons (Eq. 12), T = {Tn}")
    axes[2].legend(fontsize=8)
    print(f"   ASF, IF neurons: layer scale factor S = sum FO / sum FI = {S:.3f}")
    # the library's two estimators of S: the paper's ratio (Eq. 12) and the authors' code (only
    # neurons with FI >= FO, then an EMA 0.6 new + 0.4 previous; github.com/neural-lab/ASF-BP)
    S_paper = flows.asf_scale_paper(float(FO.sum()), float(FI.sum()), previous=1.0)
    S_code = flows.asf_scale_code(FO, FI, previous=1.0)
    print(f"   flows.asf_scale_paper = {S_paper:.3f} (= Eq. 12); flows.asf_scale_code "
          f"(masked, EMA from S = 1) = {S_code:.3f}")
    assert abs(S_paper - S) < 1e-12 and 0 < S_code


def rate_network_loss(net: nn.Sequential, X: np.ndarray, labels: np.ndarray,
                      points: list, gains: list) -> float:
    """The equivalent rate network (ASF Fig. 2b, SSF Fig. 2b): time-mean input through the
    weight layers; each spiking layer replaced by its flow mapping linearised at the real
    network's operating point -- value = the real mean firing rate FO0, slope = the flow gain."""
    x = X.mean(0)
    k = 0
    for layer in net.layers:
        if isinstance(layer, nn.LIF):
            FI0, FO0 = points[k]
            x = FO0 + gains[k] * (x - FI0)
            k += 1
        else:
            x = layer.forward(x[None])[0]          # Flatten / Linear on one "time step"
    return sdt_loss_forward(x[None], labels)[0]


def section_rate_network(rng: np.random.Generator) -> None:
    """Section 3: ASF and SSF backward = the exact gradient of the equivalent rate network."""
    print("\n3. ASF and SSF backward = exact gradient of the equivalent rate network")
    Tn, B = 6, 5
    X = rng.normal(0.6, 1.0, size=(Tn, B, 6))
    labels = rng.integers(0, 4, size=B)
    for method in ("asf", "ssf"):
        net = mlp(seed=0, dtype=np.float64, sizes=(6, 8, 7, 4), lam=0.9)
        m = make_method(method)
        net.zero_grad()
        _, c = sdt_loss_forward(m.forward(net, X), labels)
        m.backward(net, sdt_loss_backward(c))
        # Operating points and flow gains, computed here from the real spiking forward.
        points, gains, x = [], [], X
        for layer in net.layers:
            y = layer.forward(x)
            if isinstance(layer, nn.LIF):
                points.append((x.mean(0), y.mean(0)))
                if method == "asf":
                    # Eq. 12, set by m.forward.  (Were sum FI <= 0, the ratio would be
                    # undefined and the library would keep the previous S -- 1 at the start.)
                    assert x.sum() > 0
                    gains.append(layer.S)
                else:
                    st = flows.FlowState.zeros(x.shape[1:], x.dtype, np, layer.p.lam)
                    flows.lif_forward_flows(x, st, layer.p)
                    gains.append(flows.ssf_gain(st, layer.p))   # 1/(R V_th), 0 if FI<=0 or R>2
            x = y
        desc = (", ".join(f"S={g:.3f}" for g in gains) if method == "asf" else
                ", ".join(f"gain mean {g.mean():.3f} ({np.mean(g == 0):.0%} zero)"
                          for g in gains))
        print(f"   {method}: {desc}")
        for i, layer in enumerate(net.layers):
            for p in layer.own_parameters():
                num = numerical_gradient(
                    lambda n=net, pts=points, g=gains: rate_network_loss(n, X, labels, pts, g),
                    p.data)
                err = rel_error(p.grad, num)
                print(f"     layer {i} {p.name}: library {method} grad vs finite differences of "
                      f"the rate network: rel error {err:.1e}")
                assert err < 1e-7


def train(method: str, ds: data.Dataset, epochs: int) -> dict:
    net = mlp(seed=0)
    m = make_method(method)
    enc = data.DirectEncoder()
    opt = Adam(net.parameters(), lr=1e-3)
    t_fwd = t_bwd = 0.0
    for epoch in range(epochs):
        m.begin_epoch(net, epoch)                  # ASF: refresh S every 5 epochs (ASF Alg. 1)
        net.train()
        for xb, yb in data.iterate_minibatches(ds.x_train, ds.y_train, 64, rng=epoch):
            t0 = time.perf_counter()
            y = m.forward(net, xb, T, enc)
            _, c = sdt_loss_forward(y, yb)
            t1 = time.perf_counter()
            net.zero_grad()
            m.backward(net, sdt_loss_backward(c))
            t2 = time.perf_counter()
            opt.step()
            t_fwd += t1 - t0
            t_bwd += t2 - t1
    net.eval()
    acc = accuracy(m.forward(net, ds.x_test, T, enc), ds.y_test)
    return {"net": net, "acc": acc, "fwd": t_fwd, "bwd": t_bwd}


def backward_time(method: str, Tn: int, x: np.ndarray, labels: np.ndarray) -> float:
    net = mlp(seed=0)
    m = make_method(method)
    enc = data.DirectEncoder()
    best = np.inf
    for _ in range(5):
        _, c = sdt_loss_forward(m.forward(net, x, Tn, enc), labels)
        dy = sdt_loss_backward(c)
        net.zero_grad()
        t0 = time.perf_counter()
        m.backward(net, dy)
        best = min(best, time.perf_counter() - t0)
    return best


def section_asf_loss(rng: np.random.Generator) -> None:
    """ASF's loss (Eq. 6) on the non-spiking output membrane, and where its backward starts."""
    print("\n3b. ASF Eq. 6: L = 1/2 |Y - u_T / (T V_th)|^2 on the output membrane u_T = sum_t y[t]")
    T_, B, C, v_th = 5, 4, 3, 0.8
    y = rng.normal(0.3, 1.0, (T_, B, C))                     # readout currents of the last layer
    labels = rng.integers(0, C, B)
    Y = np.eye(C)[labels]
    by_hand = 0.5 * ((Y - y.sum(0) / (T_ * v_th)) ** 2).sum() / B   # averaged over the batch
    loss, cache = asf_mse_loss_forward(y, labels, v_th=v_th)
    dy = asf_mse_loss_backward(cache)      # (u_T/(T V_th) - Y)/(B T V_th): Eq. 9 before the w
    fd = numerical_gradient(lambda: asf_mse_loss_forward(y, labels, v_th=v_th)[0], y)
    print(f"   by hand {by_hand:.6f} = asf_mse_loss_forward {loss:.6f}; its gradient, the same at"
          f" every step t, vs finite differences: rel error {rel_error(dy, fd):.1e}")
    assert abs(by_hand - loss) < 1e-12 and rel_error(dy, fd) < 1e-7
    assert np.allclose(dy, dy[:1])


def section_train_compare(ds: data.Dataset, axes) -> dict[str, dict]:
    """Section 4: the same MLP trained with BPTT, ASF (Eqs. 9-12) and SSF (Eqs. 13-15) --
    accuracy, and backward time vs T; returns each method's results."""
    print(f"\n4. The same network, {EPOCHS} epochs each: MLP 64-128-128-10, LIF lam=0.5, T={T}, "
          "SDT loss, Adam")
    results = {m: train(m, ds, EPOCHS) for m in ("bptt", "asf", "ssf")}
    print(f"   {'method':6s} {'test acc':>8s} {'forward':>8s} {'backward':>9s}")
    for m, r in results.items():
        print(f"   {m:6s} {r['acc']:8.3f} {r['fwd']:7.2f}s {r['bwd']:8.2f}s")
        assert r["acc"] >= (0.6 if QUICK else 0.9), (m, r["acc"])
    print("   (the forward is the same spiking network in all three -- ASF and SSF also update\n"
          "   their running sums there; the backward is where they save)")

    Ts = [4, 16] if QUICK else [4, 8, 16, 32, 64]
    xb, yb = ds.x_train[:128], ds.y_train[:128]
    times = {m: [backward_time(m, Tn, xb, yb) for Tn in Ts] for m in ("bptt", "asf", "ssf")}
    print("   one backward pass, batch 128 (best of 5):")
    print("   " + f"{'T':>4s}" + "".join(f"{m:>10s}" for m in times))
    for i, Tn in enumerate(Ts):
        print("   " + f"{Tn:4d}" + "".join(f"{times[m][i] * 1e3:8.2f}ms" for m in times))
    ax = axes[3]
    for m, ts in times.items():
        ax.loglog(Ts, np.array(ts) * 1e3, "o-", label=m, color=COLORS[m])
    ax.set_xticks(Ts, [str(t) for t in Ts])
    ax.minorticks_off()
    ax.set_xlabel("time steps T")
    ax.set_ylabel("backward time (ms)")
    ax.set_title("one backward pass, batch 128")
    ax.legend(fontsize=8)
    ax = axes[4]
    names = list(results)
    ax.bar(names, [results[m]["acc"] for m in names], color=[COLORS[m] for m in names])
    ax.set_ylim(0.5, 1.0)
    ax.set_xlabel("training method")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"test accuracy after {EPOCHS} epochs")
    return results


def section_cosines(ds: data.Dataset, results: dict[str, dict], fig: Figure, axes) -> None:
    """Section 5: cosine of ASF's (one gain S per layer, Eq. 12) and SSF's (1/(R V_th) per
    neuron, Eq. 14) weight gradients with BPTT's, at init and after training."""
    print("\n5. Cosine similarity of each method's weight gradients with BPTT's "
          "(gradcheck.cosine_vs), batch of 256")
    xb, yb = ds.x_train[:256], ds.y_train[:256]
    enc = data.DirectEncoder()
    cos_rows = []
    for label, net_of in (("at init", lambda m: mlp(seed=0)),
                          ("after training", lambda m: results[m]["net"])):
        for m in ("asf", "ssf"):
            net = net_of(m)
            net.train()
            cos = cosine_vs(net, m, xb, yb, T=T, encoder=enc)
            cos_rows.append((f"{m} {label}", cos))
            print(f"   {m} {label:14s}: " + "  ".join(f"{k} {v:.3f}" for k, v in cos.items()))
            # The readout layer's gradient needs no flow approximation: dW = dL/dy^T (mean_t o),
            # the same in all three methods, since the forward is the same spiking network.
            assert cos["5.W"] > 1 - 1e-9
            assert all(v > 0 for v in cos.values())
    ax = axes[5]
    keys = list(cos_rows[0][1])
    for j, (label, cos) in enumerate(cos_rows):
        ax.bar(np.arange(len(keys)) + 0.2 * j - 0.3, [cos[k] for k in keys], width=0.2,
               label=label, color=COLORS[label[:3]], hatch="//" if "after" in label else None,
               edgecolor="white")
    ax.set_xticks(range(len(keys)), [f"layer {k}" for k in keys])
    ax.set_ylim(0, 1.3)                                    # room for the legend above the bars
    ax.set_xlabel("weight layer")
    ax.set_ylabel("cosine similarity")
    ax.set_title("cosine(method gradient, BPTT gradient)")
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    path = OUT / "06_flows.png"
    fig.savefig(path, dpi=90)
    print(f"   figure: {path}")
    hidden = {label: min(v for k, v in cos.items() if k != "5.W") for label, cos in cos_rows}
    print("   hidden layers, lowest cosine: "
          + ", ".join(f"{k} {v:.2f}" for k, v in hidden.items()))
    for when in ("at init", "after training"):
        assert hidden[f"ssf {when}"] > hidden[f"asf {when}"], hidden
    print("   The readout agrees exactly; below it, SSF's per-neuron gain 1/(R V_th) follows\n"
          "   BPTT's direction closely, ASF's one linear gain per layer more coarsely.  Both\n"
          "   cost one backward pass whatever T is.")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(13, 8), layout="constrained")
    axes = fig.subplots(2, 3).ravel()

    section_flows(rng, axes)
    section_rate_network(rng)
    section_asf_loss(rng)
    ds = data.load_dataset("digits")
    results = section_train_compare(ds, axes)
    section_cosines(ds, results, fig, axes)
    print("\nVerification (asserted): the flows by hand = FlowState; SSF Eqs. 12 / 18 to "
          "round-off; ASF/SSF backward = the exact gradient of the rate network;\n   readout "
          "cosine 1 for every method, every hidden cosine > 0, SSF's lowest hidden cosine above "
          "ASF's (at init and after training)")
    print("Chapter 6 done.")


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
