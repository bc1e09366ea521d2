"""Shared helpers of the command-line tools (``python -m pysnn_ref.train``, ``.evaluate``, ...).

The CLIs promise two things:

* **Bad input never shows a traceback.**  An unknown name, a bad value, a missing data file, a
  GPU asked for where none is usable: one line ``<prog>: error: <message>`` on stderr and exit
  code :data:`EXIT_USAGE` (2, the code argparse itself uses).
* **A run that diverges stops with one line too**: a non-finite loss raises
  :class:`NonFiniteLossError`, reported the same way with exit code :data:`EXIT_DIVERGED` (3).

Anything else (a bug) is not caught: its traceback is what a developer needs.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .errors import GPUUnavailableError, NonFiniteLossError

EXIT_OK = 0
EXIT_USAGE = 2      #: bad command line or input (argparse's own code)
EXIT_DIVERGED = 3   #: training stopped because the loss became NaN or infinite
EXIT_INTERRUPTED = 130   #: Ctrl-C (SIGINT): 128 + 2
EXIT_TERMINATED = 143    #: SIGTERM: 128 + 15

__all__ = [
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "Terminated",
    "ArgumentParser",
    "HelpFormatter",
    "one_line",
    "MAX_T",
    "MAX_BATCH",
    "MAX_EPOCHS",
    "RANGES",
    "INT_SETTINGS",
    "flag_name",
    "in_range",
    "ranged",
    "int_at_least",
    "int_in",
    "positive_int",
    "nonnegative_int",
    "finite_float",
    "run_main",
    "exit_line",
    "check_interrupted",
    "INTERRUPTED",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every flag's default and keeps the epilog's layout.

    A help text that already states its default (``(default: ...)``, for defaults that depend on
    other flags) is kept as it is; otherwise ``(default: X)`` is appended, ``(default: off)``
    for on/off switches and ``(default: none)`` for unset options.
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or action.default is argparse.SUPPRESS
                or not action.option_strings):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: off)" if action.default is False else f"{text} (default: on)"
        if action.default is None:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are one line on stderr (exit 2).

    argparse prints the whole usage block before its error message; the CLIs here print only
    ``<prog>: error: <message>`` so that a script (or a test) sees exactly one line.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} "
                              f"(see {self.prog} --help)\n")


MAX_T = 10_000          #: time steps per sample (--T, --tit stages)
MAX_BATCH = 100_000     #: --batch-size
MAX_EPOCHS = 1_000_000  #: --epochs (and the sum of the --tit stages)
MAX_COUNT = 10**9       #: counts without a natural bound (--max-batches, --dx, ...)


def _ints(lo: int, hi: int, extra: str = "") -> tuple[float, float, bool, str]:
    return (lo, hi, True, f"an integer in [{lo}, {hi}]{extra}")


#: setting -> (low, high, inclusive low, text): the documented valid range of every numeric flag
#: of the command lines (train, evaluate, energy, bench, ecml); a flag of the same name has the
#: same range everywhere.  The high end is always inclusive; ``momentum``'s is exclusive.
RANGES: dict[str, tuple[float, float, bool, str]] = {
    "T": _ints(1, MAX_T),
    "batch_size": _ints(1, MAX_BATCH),
    "epochs": _ints(1, MAX_EPOCHS),
    "v_th": (0, 1e6, False, "a number in (0, 1e6]"),
    "lr": (0, 1e6, False, "a number in (0, 1e6]"),
    "tit_lr": (0, 1e6, False, "a number in (0, 1e6]"),
    "weight_decay": (0, 1e6, True, "a number in [0, 1e6]"),
    "tdbn_alpha": (0, 1e6, False, "a number in (0, 1e6]"),
    "width": (0, 4, False, "a number in (0, 4]"),  # models.MAX_WIDTH
    "tet_lambda": (0, 1e6, True, "a number in [0, 1e6]"),
    "momentum": (0, 1, True, "a number in [0, 1)"),
    "lam": (0, 1, False, "a number in (0, 1]"),
    "dsr_alpha": (0, 1, False, "a number in (0, 1]"),
    "sltt_k": _ints(1, MAX_T, " (and <= --T)"),
    "surrogate_param": (1e-3, 1e3, True, "a surrogate parameter in [1e-3, 1e3]"),
    "fdg_samples": _ints(1, 10**6),
    "time_chunk": _ints(1, MAX_T),
    "asf_refresh": _ints(1, MAX_EPOCHS, " or 'batch'"),
    "seed": _ints(0, 2**32 - 1),
    "max_batches": _ints(1, MAX_COUNT),
    "max_eval_batches": _ints(1, MAX_COUNT),
    "blas_threads": _ints(0, 1024),
    # bench
    "repeats": _ints(1, 10**6),
    "warmup": _ints(1, 10**6),
    "classes": _ints(2, 10**6),
    "threads": _ints(1, 1024),
    "kernel_times": _ints(0, 10**6),
    # ecml
    "th": (0, 1e6, False, "a number in (0, 1e6]"),
    "dx": _ints(1, MAX_COUNT),
    "dh": _ints(1, MAX_COUNT),
    "k": _ints(1, 10**4),
}

#: the settings of :data:`RANGES` that are integers
INT_SETTINGS = tuple(k for k, r in RANGES.items() if r[3].startswith("an integer"))


def flag_name(name: str) -> str:
    """The command-line flag of a setting: ``"batch_size"`` -> ``"--batch-size"``."""
    return "--surrogate" if name == "surrogate_param" else "--" + name.replace("_", "-")


def in_range(name: str, v: float) -> bool:
    """Whether ``v`` lies in the documented range of setting ``name`` (:data:`RANGES`): the one
    place of these rules (the command lines, the run configuration and the run-folder schema
    all ask here)."""
    lo, hi, incl, _ = RANGES[name]
    if name == "momentum":
        return 0 <= v < 1
    return (v >= lo if incl else v > lo) and v <= hi


def ranged(name: str) -> Callable[[str], float]:
    """argparse ``type`` of the flag for setting ``name``: the text parsed as an integer (for
    :data:`INT_SETTINGS`) or a finite number, inside its range of :data:`RANGES` -- else a usage
    error, which argparse reports as one line naming the flag (exit 2)."""
    def parse(s: str) -> float:
        try:
            v: float = int(s) if name in INT_SETTINGS else float(s)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and in_range(name, v)):
            raise argparse.ArgumentTypeError(f"expected {RANGES[name][3]}, got {s!r}")
        return v

    parse.__name__ = RANGES[name][3]
    parse.setting = name   # type: ignore[attr-defined]  # which row of RANGES (tests read it)
    return parse


# argument types (argparse ``type=``): a bad value is a usage error naming what was expected

def int_at_least(s: str, minimum: int) -> int:
    """argparse ``type``: an integer >= ``minimum`` (else one clear usage error)."""
    try:
        k = int(s)
    except ValueError:
        k = minimum - 1
    if k < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {s!r}")
    return k


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """argparse ``type`` factory: an integer in ``[lo, hi]``."""
    def parse(s: str) -> int:
        k = int_at_least(s, lo)
        if k > hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {s!r}")
        return k

    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse


def positive_int(s: str) -> int:
    """argparse ``type``: an integer >= 1."""
    return int_at_least(s, 1)


def nonnegative_int(s: str) -> int:
    """argparse ``type``: an integer >= 0."""
    return int_at_least(s, 0)


def finite_float(s: str) -> float:
    """argparse ``type``: a finite number."""
    try:
        f = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(f):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return f


def one_line(message: object) -> str:
    """``message`` as a single line (internal newlines and runs of spaces collapsed)."""
    return " ".join(str(message).split())


#: exception types that mean "bad input", not "bug": ValueError (which includes
#: :class:`~pysnn_ref.errors.DataError`), missing/unreadable files, and a GPU that is not usable
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, GPUUnavailableError)


class Terminated(KeyboardInterrupt):
    """SIGTERM under :func:`run_main`: unwinds like Ctrl-C (the ``finally`` blocks run, the run
    folder keeps its last complete checkpoint, the lock is released) but exits with
    :data:`EXIT_TERMINATED` (143 = 128 + 15, what a shell reports for a process ended by
    SIGTERM) instead of 130."""


#: set by Ctrl-C / SIGTERM under :func:`run_main`; the training loop checks it at every step, so
#: an interrupt that a library swallowed (a ``KeyboardInterrupt`` raised inside a ctypes callback
#: of Numba's compiler is only printed as "Exception ignored") still stops the run
INTERRUPTED = threading.Event()


_SIGNAL: list[int] = [0]   # the signal that set INTERRUPTED


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    _SIGNAL[0] = signum
    INTERRUPTED.set()
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def check_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C arrived, :class:`Terminated` for SIGTERM (see
    :data:`INTERRUPTED`)."""
    if INTERRUPTED.is_set():
        raise Terminated if _SIGNAL[0] == signal.SIGTERM else KeyboardInterrupt


def _terminate_as_interrupt() -> dict[int, Any]:
    """SIGTERM -> ``KeyboardInterrupt`` (main thread only, default handler only); Ctrl-C back
    to ``KeyboardInterrupt`` from the start-up handler of ``pysnn_ref/__init__.py`` (which exits
    130 while the imports run)."""
    saved: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return saved
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, _raise_interrupt)
    h = signal.getsignal(signal.SIGINT)
    if h is signal.default_int_handler or \
            getattr(h, "__qualname__", "") == "interrupted_while_starting":
        saved[signal.SIGINT] = signal.signal(signal.SIGINT, _raise_interrupt)
    return saved


def _is_the_tool() -> bool:
    """Whether this process is a ``python -m pysnn_ref...`` tool (not a caller of run_main)."""
    main = sys.modules.get("__main__")
    return (getattr(main, "__package__", None) or "").split(".")[0] == "pysnn_ref"


def run_main(main: Callable[[Sequence[str] | None], int], prog: str,
             argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and map its outcome to an exit code.

    * bad input (``ValueError``, ``OSError``, ``GPUUnavailableError``) -> one line on stderr, 2;
    * :class:`NonFiniteLossError` -> one line on stderr, 3;
    * Ctrl-C -> one line on stderr, 130; SIGTERM -> one line, 143;
    * ``SystemExit`` (argparse: ``--help``, usage errors) passes through unchanged.

    SIGTERM is handled as Ctrl-C (the ``finally`` blocks run: temporary files are removed, the
    run folder's lock is released) where the process has not set a handler of its own.
    """
    saved = _terminate_as_interrupt()
    hook = sys.unraisablehook
    sys.unraisablehook = lambda u: (None if u.exc_type is not None and issubclass(
        u.exc_type, KeyboardInterrupt) else hook(u))   # swallowed Ctrl-C: no "Exception ignored"
    try:
        return int(main(argv) or 0)
    except (NonFiniteLossError, KeyboardInterrupt, *USER_ERRORS) as e:
        line, code = exit_line(e, prog)
        print(line, file=sys.stderr)
        if code in (EXIT_INTERRUPTED, EXIT_TERMINATED) and _is_the_tool():
            # the run's own clean-up (finally blocks, the lock) has run; leave now, before an
            # interrupt a library swallowed can turn the exit into a death by SIGINT
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    finally:
        INTERRUPTED.clear()
        _SIGNAL[0] = 0
        sys.unraisablehook = hook
        for sig, handler in saved.items():   # an in-process caller (a test) keeps its own
            signal.signal(sig, handler)


def exit_line(e: BaseException, prog: str) -> tuple[str, int]:
    """The one stderr line and the exit code :func:`run_main` gives exception ``e``: 3 for a
    diverged run, 143 for SIGTERM, 130 for Ctrl-C, 2 for bad input, 1 (with the exception's
    type) for anything else."""
    if isinstance(e, NonFiniteLossError):
        return f"{prog}: error: {one_line(e)}", EXIT_DIVERGED
    if isinstance(e, Terminated):
        return f"{prog}: terminated", EXIT_TERMINATED
    if isinstance(e, KeyboardInterrupt):
        return f"{prog}: interrupted", EXIT_INTERRUPTED
    msg = one_line(e) or type(e).__name__
    if isinstance(e, USER_ERRORS):
        if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
        return f"{prog}: error: {msg}", EXIT_USAGE
    return f"{prog}: error: {type(e).__name__}: {msg}", 1
