"""The gradcheck CLI: every case passes, a broken backward is caught, bad input is one line."""

import numpy as np

from pysnn_ref import gradcheck
from pysnn_ref.kernels import cpu


def test_cli_all_cases_pass(capsys):
    assert gradcheck.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(" passed, 0 failed")
    cases = "\n".join(out)
    for must in ("LIF reset=soft surrogate=dspike", "IF reset=hard surrogate=atan",
                 "network conv-tdBN-LIF", "conv", "maxpool", "tdBN"):
        assert must in cases


def test_broken_backward_is_caught(monkeypatch):
    good = cpu.lif_backward
    monkeypatch.setattr(cpu, "lif_backward", lambda *a: good(*a) * np.float64(1.001))
    rows = gradcheck.neuron_gradcheck_cases()
    assert all(err > gradcheck.TOLERANCE for _, _, err in rows)


def test_cli_bad_device_is_one_line(capsys):
    try:
        rc = gradcheck.main(["--device", "tpu"])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--device" in err[0]


def test_cli_gpu_without_gpu_is_one_line(capsys):
    rc = gradcheck.main(["--device", "gpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "gpu" in err[0]
