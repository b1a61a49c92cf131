"""Rules shared across the package: import layout, dtype and device, degenerate input, probability files."""
import ast
import pathlib
import subprocess
import sys

import pytest
import torch

from scrapl_graph import JTFS, JTFSLoss, SCRAPLLoss

N = 512
SMALL = dict(J=3, Q1=2, Q2=1, J_fr=1, Q_fr=1)
PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "scrapl_graph"

# Lower layers never import higher ones: the transform and the algorithm's
# pieces know nothing of the losses, the losses nothing of the training layer.
LAYERS = {"jtfs": 0, "checks": 0, "io": 0, "allocator": 0, "scrapl": 1, "encoders": 1, "losses": 2, "processors": 2,
          "plotting": 1, "graph": 3, "train": 4, "config": 5, "lightning": 5, "demo": 6, "bench": 6, "experiments": 6, "cli": 7}


def _internal_imports(path: pathlib.Path):
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            yield ".".join(base + ([node.module] if node.module else []))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scrapl_graph"):
            yield node.module


def test_imports_flow_one_way():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in ("__init__", "__main__"):
            continue
        own = LAYERS[parts[0]]
        for target in _internal_imports(path):
            top = target.split(".")[1] if target.count(".") else None
            if top in LAYERS and LAYERS[top] > own:
                upward.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not upward, upward


def test_every_module_is_small():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 420, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_import_changes_no_process_state():
    code = ("import scrapl_graph, scrapl_graph.allocator as a, sys; "
            "sys.exit(0 if not a.is_tuned() and 'lightning' not in sys.modules else 1)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_modules_built_under_float64_compute_in_float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        jtfs, full, scrapl = JTFS(N, **SMALL), JTFSLoss(N, **SMALL), SCRAPLLoss(N, **SMALL, use_p_adam=False)
    finally:
        torch.set_default_dtype(previous)
    x = torch.randn(1, 1, N, dtype=torch.float64)
    assert jtfs.dtype == torch.float64 and jtfs(x).dtype == torch.float64
    assert full.jtfs.dtype == scrapl.jtfs.dtype == torch.float64
    assert full(x, 2 * x).dtype == scrapl(x, 2 * x).dtype == torch.float64


@pytest.mark.parametrize("make", [lambda: JTFSLoss(N, **SMALL), lambda: SCRAPLLoss(N, **SMALL, use_p_adam=False)])
def test_losses_follow_the_input_dtype_the_same_way(make):
    loss = make()
    x32, y32 = torch.randn(2, 1, N), torch.randn(2, 1, N)
    value32 = loss(x32, y32, **({} if isinstance(loss, JTFSLoss) else {"path_idx": 0}))
    value64 = loss(x32.double(), y32.double(), **({} if isinstance(loss, JTFSLoss) else {"path_idx": 0}))
    assert value32.dtype == torch.float32 and value64.dtype == torch.float64
    torch.testing.assert_close(value64.float(), value32, rtol=1e-4, atol=0)


@pytest.mark.parametrize("make", [lambda: JTFSLoss(N, **SMALL), lambda: SCRAPLLoss(None, **SMALL, use_p_adam=False)])
def test_to_moves_every_cached_transform_and_input_elsewhere_is_refused(make):
    loss = make()
    loss(torch.randn(1, 1, N), torch.randn(1, 1, N))
    loss(torch.randn(1, 1, N).double(), torch.randn(1, 1, N).double())
    loss.to("meta")
    buffers = list(loss.buffers())
    assert len(buffers) > 2 and all(b.device.type == "meta" for b in buffers)
    with pytest.raises(ValueError, match="move the loss"):
        loss(torch.randn(1, 1, N), torch.randn(1, 1, N))


DEGENERATE = [
    (torch.randn(0, 1, N), ValueError),           # batch 0
    (torch.randn(2, 0, N), ValueError),           # channels 0
    (torch.randn(2, 1, 0), ValueError),           # length 0
    (torch.randn(2, 1, 1), ValueError),           # length 1
    (torch.randn(2, 1, 7), ValueError),           # below 2**J
    (torch.ones(2, 1, N, dtype=torch.int64), TypeError),
    (torch.randn(2, 1, N, dtype=torch.complex64), TypeError),
    (torch.full((2, 1, N), float("inf")), ValueError),
    (torch.randn(2, 1, N, device="meta"), ValueError),  # another device than the module's
]


@pytest.mark.parametrize("x, error", DEGENERATE)
@pytest.mark.parametrize("make", [lambda: JTFSLoss(N, **SMALL), lambda: SCRAPLLoss(None, **SMALL, use_p_adam=False)])
def test_degenerate_input_gets_our_clear_error(make, x, error):
    loss = make()
    with pytest.raises(error) as info:
        loss(x, x.clone())
    assert info.traceback[-1].path.is_relative_to(PACKAGE)  # raised by our own code


def test_jtfs_refuses_empty_batch():
    with pytest.raises(ValueError, match="size 0"):
        JTFS(N, **SMALL)(torch.randn(0, N))


def test_probability_files_carry_their_identity(tmp_path):
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False)
    probs = torch.rand(loss.n_paths, dtype=torch.float64)
    loss.probs = probs / probs.sum()
    loss.save_probs(str(tmp_path / "probs.pt"))
    same = SCRAPLLoss(2 * N, **SMALL, use_p_adam=False, probs_path=str(tmp_path / "probs.pt"))
    torch.testing.assert_close(same.probs, loss.probs)
    other = SCRAPLLoss(N, **{**SMALL, "Q_fr": 2}, use_p_adam=False)
    with pytest.raises(ValueError, match="another JTFS configuration"):
        other.load_probs(str(tmp_path / "probs.pt"))
    same_count = SCRAPLLoss(N, **{**SMALL, "T": 16}, use_p_adam=False)
    if same_count.n_paths == loss.n_paths:  # same length, another configuration: still refused
        with pytest.raises(ValueError, match="T="):
            same_count.load_probs(str(tmp_path / "probs.pt"))
    torch.save(loss.probs.clone(), tmp_path / "bare.pt")  # the reference package's format
    SCRAPLLoss(N, **SMALL, use_p_adam=False, probs_path=str(tmp_path / "bare.pt"))


def _chirplet():
    from scrapl_graph.processors import ChirpletSynth

    return ChirpletSynth(sample_rate=8192, num_samples=1024, f0_hz=512, max_shift=0)


@pytest.mark.parametrize("change, error", [
    (lambda v: v[:0], ValueError),                      # no node
    (lambda v: v.long(), TypeError),
    (lambda v: v.to(torch.complex64), TypeError),
    (lambda v: v * float("nan"), ValueError),
])
def test_processors_and_graphs_refuse_degenerate_parameters(change, error):
    from scrapl_graph.graph import GraphSynth

    synth = _chirplet()
    params = {k: change(torch.zeros(2, *v)) for k, v in synth.parameter_size().items()}
    with pytest.raises(error) as info:
        synth(None, **params)
    assert info.traceback[-1].path.is_relative_to(PACKAGE)
    graph = GraphSynth.chain({"chirplet": _chirplet()}, num_samples=1024)
    with pytest.raises(error) as info:
        graph(change(torch.zeros(2, graph.n_theta)))
    assert info.traceback[-1].path.is_relative_to(PACKAGE)


def test_training_loops_refuse_an_empty_target():
    from scrapl_graph.graph import GraphSynth
    from scrapl_graph.train import optimize_graph

    graph = GraphSynth.chain({"chirplet": _chirplet()}, num_samples=1024)
    with pytest.raises(ValueError, match="at least one example"):
        optimize_graph(graph, torch.zeros(0, 1, 1024), "mss", steps=1, progress=False)
