"""The window-partition supplement's closed forms: S(theta), Table 1 and the complexity Eqs. 1-2.

Source: Yao, Wu, Chen & Zhang, "Training a General Spiking Neural Network with Improved
Efficiency and Minimum Latency", supplementary material (code:
github.com/iverss1/ECML_SNN).

* Eq. 6 (Sec. 4.2): the area of the "fusion surface" over the over-activation range
  R in (th, 2 th) depends only on the radian factor theta::

      S(theta) = 16 * sin(3 theta pi th / 2) * sin(theta pi th / 4)^2 / (theta^2 pi^2)

* Table 1: ``nabla D = S(theta) - S_plane``, the area difference to the linear plane X + Y.
  The paper does not write S_plane out; our reading (docs/seeds.md): the plane z = x over
  R = (th, 2 th) has area ``int_th^2th x dx = 3 th^2 / 2`` (0.375 at th = 0.5), which
  reproduces every printed nabla D when truncated to 2 decimals as the table prints.
* Eqs. 1-2 (Sec. 3.1): operation counts of a spiking conv (SCNN-W) and a spiking LSTM (LSNN-W)
  in one window, bias ignored, and their ratio's leading-order form.

CLI: ``python -m pysnn_ref.ecml table1 [--th TH]`` and
``python -m pysnn_ref.ecml complexity --dx D --dh H --k K``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import numpy as np

from .cli import ArgumentParser, ranged, run_main

__all__ = ["TABLE1_THETA", "surface_area", "plane_area", "delta_d", "truncate2", "table1",
           "complexity_scnn", "complexity_lsnn", "complexity_ratio_approx", "main"]

TABLE1_THETA: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)  #: Table 1's theta column


def _check_th(th: float) -> None:
    if not (isinstance(th, (int, float)) and math.isfinite(th) and th > 0):
        raise ValueError(f"th must be a finite number > 0, got {th!r}")


def surface_area(theta: np.ndarray | float, th: float = 0.5) -> np.ndarray:
    """S(theta) of the supplement's Eq. 6 (theta != 0; elementwise)."""
    _check_th(th)
    theta = np.asarray(theta, dtype=np.float64)
    if np.any(~np.isfinite(theta)) or np.any(theta == 0):
        raise ValueError("theta must be finite and non-zero")
    p = np.pi
    return 16.0 * np.sin(1.5 * theta * p * th) * np.sin(theta * p * th / 4.0) ** 2 / (
        theta ** 2 * p ** 2)


def plane_area(th: float = 0.5) -> float:
    """Area of the linear plane z = x over R = (th, 2 th): 3 th^2 / 2 (our reading, see module)."""
    _check_th(th)
    return 1.5 * th * th


def delta_d(theta: np.ndarray | float, th: float = 0.5) -> np.ndarray:
    """nabla D of Table 1: S(theta) - plane area."""
    return surface_area(theta, th) - plane_area(th)


def truncate2(v: float) -> float:
    """Truncate toward zero to 2 decimals, as Table 1 prints (0.0583 -> 0.05, -0.3167 -> -0.31)."""
    return math.trunc(round(v * 100.0, 9)) / 100.0


def table1(th: float = 0.5) -> list[tuple[float, float, float]]:
    """Rows (theta, S(theta), nabla D) of Table 1, full precision."""
    S = surface_area(np.array(TABLE1_THETA), th)
    D = S - plane_area(th)
    return [(t, float(s), float(d)) for t, s, d in zip(TABLE1_THETA, S, D, strict=True)]


def _check_dims(**dims: int) -> None:
    for name, v in dims.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def complexity_scnn(dx: int, dh: int, kh: int, kw: int) -> int:
    """Eq. 1, spiking conv in a window: Omega(SCNN-W) = d_x k_h k_w d_h * 2."""
    _check_dims(dx=dx, dh=dh, kh=kh, kw=kw)
    return dx * kh * kw * dh * 2


def complexity_lsnn(dx: int, dh: int) -> int:
    """Eq. 1, spiking LSTM in a window: Omega(LSNN-W) = d_x d_h 8 + d_h (d_h 8 + 20)."""
    _check_dims(dx=dx, dh=dh)
    return dx * dh * 8 + dh * (dh * 8 + 20)


def complexity_ratio_approx(dx: int, dh: int, kh: int, kw: int) -> float:
    """Eq. 2, leading-order ratio (the O(d_h) term dropped): d_x k_h k_w / ((d_x + d_h) * 4)."""
    _check_dims(dx=dx, dh=dh, kh=kh, kw=kw)
    return dx * kh * kw / ((dx + dh) * 4)


def _print_table1(th: float) -> None:
    rows = table1(th)
    print(f"Table 1 (supplement Eq. 6), th = {th:g}; values truncated to 2 decimals "
          "(full precision in brackets)")
    def cells(vals: Sequence[float]) -> str:
        return "".join(f"{truncate2(v):.2f} [{v:.4f}]".rjust(16) for v in vals)

    print("theta       " + "".join(f"{t:>16g}" for t, _, _ in rows))
    print(f"S(th={th:g})  " + cells([s for _, s, _ in rows]))
    print("nabla D     " + cells([d for _, _, d in rows]))
    print(f"(nabla D = S(theta) - 3 th^2/2, plane area {plane_area(th):g})")


def _print_complexity(dx: int, dh: int, k: int) -> None:
    sc, ls = complexity_scnn(dx, dh, k, k), complexity_lsnn(dx, dh)
    print(f"Eq. 1  Omega(SCNN-W) = d_x*k_h*k_w*d_h*2 = {dx}*{k}*{k}*{dh}*2 = {sc}")
    print(f"Eq. 1  Omega(LSNN-W) = d_x*d_h*8 + d_h*(d_h*8+20) = {ls}")
    print(f"       exact ratio SCNN/LSNN = {sc / ls:.4f}")
    print(f"Eq. 2  ratio ~ d_x*k_h*k_w/((d_x+d_h)*4) = {complexity_ratio_approx(dx, dh, k, k):.4f}")


def make_parser() -> argparse.ArgumentParser:
    """The ``python -m pysnn_ref.ecml`` argument parser (``table1``, ``complexity``)."""
    p = ArgumentParser(prog="python -m pysnn_ref.ecml",
                       description="Closed forms of the window-partition supplement.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table1", help="Table 1: S(theta) of Eq. 6 and nabla D")
    t.add_argument("--th", type=ranged("th"), default=0.5, help="LIF threshold th")
    c = sub.add_parser("complexity", help="Eqs. 1-2: SCNN-W vs LSNN-W operation counts")
    c.add_argument("--dx", type=ranged("dx"), required=True, help="input dimension d_x")
    c.add_argument("--dh", type=ranged("dh"), required=True, help="output dimension d_h")
    c.add_argument("--k", type=ranged("k"), default=3, help="conv kernel size k_h = k_w")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pysnn_ref.ecml``: print Table 1 or the complexity counts; the exit code."""
    args = make_parser().parse_args(argv)
    if args.cmd == "table1":
        _print_table1(args.th)
    else:
        _print_complexity(args.dx, args.dh, args.k)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m pysnn_ref.ecml"))
