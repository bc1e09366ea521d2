"""
Chapter 8 -- Training a whole spiking network with BPTT
=======================================================

Chapters 2-7 built the pieces; here they learn.  The task is the 8x8 handwritten digits that ship
inside scikit-learn (1,438 training and 359 test images, 10 classes; nothing is downloaded).

* **Input encoding.**  ``DirectEncoder`` presents the (standardised) analog image unchanged at
  every one of the T steps -- "direct encoding", the first layer's current is the same each step
  and its neurons turn it into spikes.  The encoded input is a stride-0 view: no copy.
* **Network.**  ``Flatten -> Linear(64, 128) -> LIF -> Linear(128, 10)``: one hidden layer of
  128 LIF neurons (lam = 0.5, V_th = 1, hard reset, triangle surrogate).  The output layer does
  not spike: y[t] = W o[t] + b is the readout current at step t, shape (T, B, 10).
* **Loss.**  SDT, "standard direct training" (TET paper, Deng et al. ICLR 2022, Eq. 7): the
  cross-entropy of the time-averaged output, L = CE(mean_t y[t], label); the prediction is
  argmax_c mean_t y[t, c] (Dspike's readout, Eq. 3).  Its gradient is TET Eq. 8's error term,
  (softmax(mean_t y) - onehot) / T at every step.
* **Backward.**  ``net.backward(dL/dy)`` runs BPTT through every layer: each Linear back through
  all T steps at once (time folded into the batch, chapter 7), each LIF back through time with
  the exact recurrence of chapter 5 and the triangle surrogate of chapter 4 (TET Eq. 5).
* **Optimiser.**  Adam (lr 1e-3), as TET and ASF-BP train (``pysnn_ref/optim.py`` writes out
  the update).

The loop is written out in full; ``python -m pysnn_ref.train`` is the same loop with flags,
checkpoints and logs.  After the MLP, ``pysnn_ref.models.make_model("lenet", ...)`` trains a
small convolutional SNN (ASF's LeNet: 16C3-AP2-32C3-AP2-FC128) the same way.  The figure
``tutorials/out/08_training.png`` shows the learning curves and the hidden layer's spikes for one
test digit.

Run:  python tutorials/08_train_with_bptt.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from threadpoolctl import threadpool_limits

from pysnn_ref import data, models, nn
from pysnn_ref.functional.loss import accuracy, sdt_loss_backward, sdt_loss_forward
from pysnn_ref.methods import make_method
from pysnn_ref.optim import Adam

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))

T = 4                      # time steps
BATCH = 64
EPOCHS = 2 if QUICK else 15
LENET_EPOCHS = 1 if QUICK else 6


def evaluate(net: nn.Module, x: np.ndarray, labels: np.ndarray,
             encoder: data.Encoder) -> tuple[float, float]:
    """(loss, accuracy) on a whole split, in eval mode."""
    net.eval()
    y = net.forward(encoder.encode(x, T))
    net.train()
    return sdt_loss_forward(y, labels)[0], accuracy(y, labels)


def train(net: nn.Module, ds: data.Dataset, epochs: int, name: str,
          lr: float = 1e-3) -> list[dict]:
    """BPTT training, written out.  Returns one dict of measurements per epoch."""
    encoder = data.DirectEncoder()
    opt = Adam(net.parameters(), lr=lr)
    spiking = nn.spiking_layers(net)
    history = []
    for epoch in range(epochs):
        t_fwd = t_bwd = 0.0
        losses, hits = [], 0
        for xb, yb in data.iterate_minibatches(ds.x_train, ds.y_train, BATCH, rng=epoch):
            t0 = time.perf_counter()
            X = encoder.encode(xb, T)                      # (T, B, 1, 8, 8), a stride-0 view
            y = net.forward(X)                             # (T, B, 10): readout per step
            loss, cache = sdt_loss_forward(y, yb)          # TET Eq. 7
            t1 = time.perf_counter()
            net.zero_grad()
            net.backward(sdt_loss_backward(cache), need_dx=False)   # BPTT through all layers
            t2 = time.perf_counter()
            opt.step()
            t_fwd += t1 - t0
            t_bwd += t2 - t1
            losses.append(loss)
            hits += int(round(accuracy(y, yb) * len(yb)))
        rate = float(np.mean([n.firing_rate for n in spiking]))
        test_loss, test_acc = evaluate(net, ds.x_test, ds.y_test, encoder)
        rec = dict(epoch=epoch + 1, loss=float(np.mean(losses)), train_acc=hits / len(ds.y_train),
                   test_loss=test_loss, test_acc=test_acc, rate=rate, fwd=t_fwd, bwd=t_bwd)
        history.append(rec)
        print(f"   {name} epoch {epoch + 1:2d}/{epochs}: loss {rec['loss']:.4f}  "
              f"train acc {rec['train_acc']:.3f}  test acc {test_acc:.3f}  firing rate "
              f"{rate:.3f}  forward {t_fwd:.2f}s  backward {t_bwd:.2f}s")
    return history


def plot_training(hist: list[dict], x0: np.ndarray, label: int, pred: int,
                  spikes: np.ndarray) -> None:
    """Section 3's figure: loss and accuracy per epoch, the digit, its hidden spike raster."""
    fig = plt.figure(figsize=(12, 6.5), layout="constrained")
    gs = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(gs[0, :2])
    ep = [r["epoch"] for r in hist]
    ax.plot(ep, [r["loss"] for r in hist], "o-", label="train loss")
    ax.plot(ep, [r["test_loss"] for r in hist], "o-", label="test loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("SDT loss")
    ax2 = ax.twinx()
    ax2.plot(ep, [r["test_acc"] for r in hist], "s--", color="C2", label="test accuracy")
    ax2.set_ylabel("test accuracy")
    ax.legend(loc="center right", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    ax.set_title("MLP 64-128(LIF)-10 on digits, BPTT")
    ax = fig.add_subplot(gs[0, 2])
    ax.imshow(x0[0, 0], cmap="gray_r")
    ax.set_title(f"test digit, label {label}, predicted {pred}")
    ax.axis("off")
    ax = fig.add_subplot(gs[1, :])
    ax.imshow(spikes, aspect="auto", cmap="Greys", interpolation="nearest")
    ax.set_xlabel("hidden neuron")
    ax.set_ylabel("time step t")
    ax.set_yticks(range(T))
    ax.set_title("hidden-layer spikes o[t] for this digit (black = spike)")
    path = OUT / "08_training.png"
    fig.savefig(path, dpi=90)
    print(f"   figure: {path}")


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. The digits data set and the direct encoder (the same image at every step)
# ----------------------------------------------------------------------------

def section_data() -> data.Dataset:
    print("1. Data and encoding")
    ds = data.load_dataset("digits")
    print(f"   train {ds.x_train.shape}, test {ds.x_test.shape}, {ds.num_classes} classes, "
          f"standardised (mean {ds.mean[0]:.3f}, std {ds.std[0]:.3f} subtracted/divided)")
    X = data.DirectEncoder().encode(ds.x_train[:BATCH], T)
    print(f"   DirectEncoder: {ds.x_train[:BATCH].shape} -> {X.shape}, time stride "
          f"{X.strides[0]} bytes (the same image at every step, no copy)")
    assert X.shape == (T, BATCH, 1, 8, 8) and X.strides[0] == 0
    return ds


OUT.mkdir(parents=True, exist_ok=True)
ds = section_data()


# %%
# 2. The MLP, I[t] = W x[t] + b (SSF Eq. 4) into LIF neurons (SSF Eqs. 6-7)
# -------------------------------------------------------------------------
# The MLP, I[t] = W x[t] + b (SSF Eq. 4) into LIF neurons (SSF Eqs. 6-7); the bptt method gives
# the same gradients as net.backward.

def section_network(ds: data.Dataset) -> nn.Sequential:
    print("\n2. The network: I[t] = W x[t] + b (SSF Eq. 4), LIF neurons (SSF Eqs. 6-7)")
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Flatten(),                                      # (T, B, 1, 8, 8) -> (T, B, 64)
        nn.Linear(64, 128, rng=rng),                       # I[t] = W x[t] + b   (SSF Eq. 4)
        nn.LIF(lam=0.5, v_th=1.0, reset="hard", surrogate="triangle"),
        nn.Linear(128, 10, rng=rng),                       # readout, does not spike
    )
    print("   " + repr(net).replace("\n", "\n   "))
    _, acc0 = evaluate(net, ds.x_test, ds.y_test, data.DirectEncoder())
    print(f"   untrained test accuracy: {acc0:.3f} (chance is 0.1)")

    # The method seam of chapter 11: make_method("bptt") runs exactly this forward and backward.
    xb, yb = ds.x_train[:BATCH], ds.y_train[:BATCH]
    net.zero_grad()
    _, c = sdt_loss_forward(net.forward(data.DirectEncoder().encode(xb, T)), yb)
    net.backward(sdt_loss_backward(c), need_dx=False)
    by_hand = [p.grad.copy() for p in net.parameters()]
    bptt = make_method("bptt")
    net.zero_grad()
    _, c = sdt_loss_forward(bptt.forward(net, xb, T, data.DirectEncoder()), yb)
    bptt.backward(net, sdt_loss_backward(c))
    assert all(np.array_equal(a, p.grad) for a, p in zip(by_hand, net.parameters(), strict=True))
    print("   (make_method('bptt').forward/backward give the same gradients as "
          "net.forward/net.backward)")
    return net


net = section_network(ds)


# %%
# 3. BPTT training with the SDT loss (TET Eqs. 7-8), and one digit's spike raster
# -------------------------------------------------------------------------------

def section_train(net: nn.Sequential, ds: data.Dataset) -> float:
    print(f"\n3. Training: BPTT, SDT loss (TET Eq. 7, gradient Eq. 8), Adam lr 1e-3, "
          f"batch {BATCH}, T = {T}")
    hist = train(net, ds, EPOCHS, "MLP")
    final = hist[-1]["test_acc"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert final >= (0.6 if QUICK else 0.93), final

    # The hidden layer's spikes for one test digit: a raster of T steps x 128 neurons.
    # Run the layers one by one to look inside (the same as net.forward).
    net.eval()
    i = 2
    x0, label = ds.x_test[i:i + 1], int(ds.y_test[i])
    h = net.layers[1].forward(net.layers[0].forward(data.DirectEncoder().encode(x0, T)))
    spikes = net.layers[2].forward(h)                     # (T, 1, 128)
    y = net.layers[3].forward(spikes)                     # (T, 1, 10)
    pred = int(np.argmax(y.mean(axis=0)))
    spikes = spikes[:, 0, :]
    print(f"   test digit {i} (label {label}): predicted {pred}; {int(spikes.sum())} "
          f"hidden spikes in {T} steps ({spikes.mean():.2f} per neuron per step)")
    plot_training(hist, x0, label, pred, spikes)
    return final


final = section_train(net, ds)


# %%
# 4. A convolutional SNN from pysnn_ref.models, trained the same way
# ------------------------------------------------------------------

def section_lenet(ds: data.Dataset) -> float:
    print(f"\n4. A convolutional SNN from pysnn_ref.models ({LENET_EPOCHS} epoch(s))")
    lenet = models.make_model("lenet", ds.input_shape, ds.num_classes,
                              neuron=lambda: nn.LIF(lam=0.5, v_th=1.0), seed=0)
    print("   " + repr(lenet).replace("\n", "\n   "))
    hist = train(lenet, ds, LENET_EPOCHS, "LeNet", lr=3e-3)
    lenet_acc = hist[-1]["test_acc"]
    assert lenet_acc >= (0.2 if QUICK else 0.9), lenet_acc
    return lenet_acc


lenet_acc = section_lenet(ds)


# %%
# What the asserts above checked
# ------------------------------

print(f"\nVerification (asserted): make_method('bptt') = net.forward/backward, gradients "
      f"bit for bit;\n   measured test accuracy: MLP {final:.3f} "
      f"(>= {0.6 if QUICK else 0.93}), LeNet {lenet_acc:.3f} (>= {0.2 if QUICK else 0.9}); "
      "chance 0.1")
print("Chapter 8 done.")
