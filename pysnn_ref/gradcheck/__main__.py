"""``python -m pysnn_ref.gradcheck``: every hand-written backward against central finite
differences (float64, smooth-mode spikes); one row per (case, parameter), exit 1 on failure.
"""

from __future__ import annotations

from collections.abc import Callable

from ..cli import ArgumentParser, run_main
from .family import family_gradcheck_cases
from .finite_diff import TOLERANCE
from .flows import flow_gradcheck_cases, loss_gradcheck_cases
from .layers import layer_gradcheck_cases
from .networks import network_gradcheck_cases
from .neurons import neuron_gradcheck_cases
from .online import online_gradcheck_cases

#: the groups of checks, in the order the CLI runs them
GROUPS: dict[str, Callable[[str], list[tuple[str, str, float]]]] = {
    "layers": layer_gradcheck_cases,      # linear, conv, pooling, BN/tdBN, shape, LSTM
    "neurons": neuron_gradcheck_cases,    # LIF/IF BPTT, every reset and surrogate
    "networks": network_gradcheck_cases,  # BPTT through whole networks
    "flows": flow_gradcheck_cases,        # ASF, SSF vs their equivalent rate networks
    "losses": loss_gradcheck_cases,       # SDT, TET, ASF-MSE
    "family": family_gradcheck_cases,     # DSR, rate-BP networks (CPU only)
    "online": online_gradcheck_cases,     # OTTT, SLTT networks (CPU only)
}


def all_gradcheck_cases(device: str = "cpu",
                        groups: list[str] | None = None) -> list[tuple[str, str, float]]:
    """Every check the CLI runs (or those of ``groups``): ``(case, parameter, rel error)``."""
    return [row for g in (groups or list(GROUPS)) for row in GROUPS[g](device)]


def _main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(
        prog="python -m pysnn_ref.gradcheck",
        description="Check every hand-written backward against central finite differences "
                    f"(float64, smooth-mode spikes); fails if any relative error > "
                    f"{TOLERANCE:g}.")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                    help="where the analytic gradients run")
    ap.add_argument("--group", action="append", choices=tuple(GROUPS), default=None,
                    help="run only this group of checks (repeatable; default: all): "
                         + ", ".join(GROUPS))
    ap.add_argument("--case", default=None, metavar="TEXT",
                    help="print only the cases whose name contains TEXT (e.g. 'ssf', 'soft')")
    args = ap.parse_args(argv)
    rows = all_gradcheck_cases(args.device, args.group)
    if args.case is not None:
        rows = [r for r in rows if args.case in r[0]]
        if not rows:
            raise ValueError(f"--case {args.case!r} matches no check of the groups run")
    width = max(len(c) for c, _, _ in rows)
    print(f"{'case':<{width}}  {'param':<8} {'rel err':>9}  ok")
    bad = 0
    for case, param, err in rows:
        ok = err <= TOLERANCE
        bad += not ok
        print(f"{case:<{width}}  {param:<8} {err:9.2e}  {'yes' if ok else 'NO'}")
    print(f"{len(rows) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pysnn_ref.gradcheck``: one row per (case, parameter), exit 1 on failure."""
    return run_main(_main, "python -m pysnn_ref.gradcheck", argv)


if __name__ == "__main__":
    raise SystemExit(main())
