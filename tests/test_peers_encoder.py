"""benchmarks/peers.py's ``--encoder`` and ``--threads`` (issue 28 items 1 and 5), and the
pre-encoded input of :class:`pysnn_ref.bench.measure.Runner` that ``--encoder poisson`` uses.

The runs against torch / SpikingJelly / snnTorch skip where those are not importable (the
default environment has none of them); the flag checks and ``Runner`` need none.
"""

import importlib.util
import json
from pathlib import Path

import numba
import numpy as np
import pytest

from pysnn_ref.bench import measure

TINY = ["--model", "mlp", "--T", "2", "--batch-size", "2", "--repeats", "1", "--warmup", "1"]


def _peers():
    """benchmarks/peers.py, imported by path (a script, not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
    spec = importlib.util.spec_from_file_location("peers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cli(peers, argv, capsys):
    try:
        rc = peers.cli(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    return rc, capsys.readouterr().err


def test_threads_and_encoder_flags_are_checked_in_one_line(capsys):
    """--threads below 1 or above the cores / NUMBA_NUM_THREADS, an unknown encoder, and
    --encoder poisson with the on-lif workload: one line on stderr, exit 2 (before any peer is
    imported, so this runs without torch); a valid --threads is undone after the run."""
    peers = _peers()
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    for argv, word in ((["--threads", "0"], "threads"), (["--threads", "-3"], "threads"),
                       (["--threads", str(too_many)], "threads"),
                       (["--threads", "1000000"], "threads"),
                       (["--encoder", "rate"], "encoder"),
                       (["--model", "on-lif", "--encoder", "poisson"], "encoder")):
        rc, err = _cli(peers, [*TINY, *argv] if "on-lif" not in argv else argv, capsys)
        assert rc == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and word in err, (argv, err)
    before = measure.thread_count()
    rc, err = _cli(peers, ["--model", "on-lif", "--threads", "1", "--neurons", "0",
                           "--peers", "torch"], capsys)
    assert rc == 2 and "neurons" in err
    assert measure.thread_count() == before


def _bench_args(T=3, batch=4):
    """The namespace Runner takes, as peers.py builds it (pysnn_ref.bench's parser)."""
    peers = _peers()
    return peers.bench_args(peers.make_parser().parse_args(["--model", "mlp", "--T", str(T),
                                                            "--batch-size", str(batch)]))


def test_runner_takes_a_pre_encoded_input():
    """Runner(inputs=X): every step takes the (T, B, ...) tensor X as it is (no encoder).  With
    X the direct encoding written out, one SGD step lands where the default Runner's does (the
    stride-0 first layer sums the same rows in another order: float32 rounding only); a wrong
    shape is a clear error naming ``inputs``."""
    b = _bench_args()
    T = b.T[0]
    x, _ = measure.synthetic_batch(b.batch_size, b.input_shape, b.classes, np.float32, b.seed)
    X = np.ascontiguousarray(np.broadcast_to(x, (T, *x.shape)))
    plain, given = measure.Runner(b, "bptt", T), measure.Runner(b, "bptt", T, inputs=X)
    assert plain.encoder is not None and given.encoder is None
    assert given.x.shape == (T, *x.shape) and given.x.strides[0] != 0
    plain.step()
    given.step()
    for (name, p), q in zip(plain.net.named_parameters().items(),
                            given.net.named_parameters().values(), strict=True):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match="inputs must have shape"):
        measure.Runner(b, "bptt", T, inputs=X[:-1])


def _check_records(records, peers, b):
    """Every configuration held the same Poisson spikes, and agrees with our gradients and
    hidden spikes on them."""
    want = peers.input_digest(peers.poisson_input(b))
    assert {r["input_sha256"] for r in records} == {want}
    assert want != peers.input_digest(
        measure.synthetic_batch(b.batch_size, b.input_shape, b.classes, np.float32, 0)[0])
    for r in records:
        assert r["encoder"] == "poisson" and r["config"] and 0.3 < r["input_rate"] < 0.7
        if r["config"] == "ours":
            continue
        # snnTorch's default Leaky detaches its reset: compared with our detach_reset=True
        d = r.get("grad_max_rel_diff_vs_detach_reset", r["grad_max_rel_diff"])
        assert d <= 1e-5, r
        assert r["spike_mismatches"] == 0 and r["spikes_total"] > 0, r


def test_poisson_input_is_the_same_in_ours_and_torch(tmp_path, capsys):
    """``--encoder poisson --peers torch``: the records (JSON) carry the encoder and the digest
    of each configuration's input -- the one tensor our Poisson encoder drew -- and torch
    autograd's gradients and spikes on it agree with ours."""
    pytest.importorskip("torch")
    peers = _peers()
    js = tmp_path / "p.json"
    rc, err = _cli(peers, [*TINY, "--encoder", "poisson", "--peers", "torch", "--threads", "1",
                           "--json", str(js)], capsys)
    assert rc == 0, err
    records = json.loads(js.read_text())
    assert [r["config"] for r in records] == ["ours", "torch"]
    assert all(r["threads"] == 1 and r["threads_from"] == "--threads" for r in records)
    _check_records(records, peers, peers.bench_args(peers.make_parser().parse_args(TINY)))


@pytest.mark.parametrize("library", ["spikingjelly", "snntorch"])
def test_poisson_input_is_the_same_in_the_peers(library):
    """The eager SpikingJelly / snnTorch configurations on the same Poisson spikes (the first
    layer in step_mode 'm' / inside the per-step loop); spikingjelly-compile is left out here
    (its inductor compile takes about a minute), the smoke runs cover it."""
    pytest.importorskip("torch")
    pytest.importorskip(library)
    peers = _peers()
    configs = {"spikingjelly": ["spikingjelly"],
               "snntorch": ["snntorch", "snntorch-nodelay"]}[library]
    b = peers.bench_args(peers.make_parser().parse_args(TINY))
    _, records = peers.run(b, configs, "poisson")
    assert [r["config"] for r in records] == ["ours", *configs]
    _check_records(records, peers, b)
