"""``python -m pysnn_ref.gradcheck``: every hand-written backward against central finite
differences (float64, smooth-mode spikes); one row per (case, parameter), exit 1 on failure.
"""

from __future__ import annotations

from ..cli import ArgumentParser, run_main
from .family import family_gradcheck_cases
from .finite_diff import TOLERANCE
from .layers import layer_gradcheck_cases
from .networks import network_gradcheck_cases
from .neurons import neuron_gradcheck_cases


def all_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """Every check the CLI runs: layers, neurons, a whole network, the family's networks (DSR,
    rate-BP; CPU only)."""
    return (layer_gradcheck_cases(device) + neuron_gradcheck_cases(device)
            + network_gradcheck_cases(device) + family_gradcheck_cases(device))



def _main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(
        prog="python -m pysnn_ref.gradcheck",
        description="Check every hand-written backward against central finite differences "
                    f"(float64, smooth-mode spikes); fails if any relative error > "
                    f"{TOLERANCE:g}.")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                    help="where the analytic gradients run")
    args = ap.parse_args(argv)
    rows = all_gradcheck_cases(args.device)
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
