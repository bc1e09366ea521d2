"""``--device gpu`` on a machine without a usable GPU: every CLI says in one line what is missing
and how to install it, and exits 2 (issue 13, item 4).  Where a GPU stack *is* usable the test
has nothing to check and skips."""

from __future__ import annotations

import pytest

from pysnn_ref import backend
from pysnn_ref.bench import __main__ as bench_cli
from pysnn_ref.gradcheck import __main__ as gradcheck_cli
from pysnn_ref.train import __main__ as train_cli


def _gpu_usable() -> bool:
    try:
        backend.get_backend("gpu")
    except backend.GPUUnavailableError:
        return False
    return True


@pytest.mark.parametrize("cli", [train_cli.cli, gradcheck_cli.main, bench_cli.cli],
                         ids=["train", "gradcheck", "bench"])
def test_device_gpu_without_gpu_is_one_line_exit_2(cli, capsys, tmp_path) -> None:
    if _gpu_usable():
        pytest.skip("a usable GPU is present")
    argv = ["--device", "gpu"]
    if cli is train_cli.cli:
        argv += ["--out", str(tmp_path / "run"), "--no-progress"]
    rc = cli(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "gpu" in lines[0] and "pip install" in lines[0], lines[0]
    assert not (tmp_path / "run" / "config.json").exists()
