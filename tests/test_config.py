"""Graph synths, thetas and runs from YAML / JSON configs."""
import copy
import json
import warnings

import pytest
import torch
import yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from grafx.data import GRAFX, NodeConfigs
    from grafx.processors import ZeroPhaseFIREqualizer

from scrapl_graph import SCRAPLLoss
from scrapl_graph.config import build_graph_synth, load_run_config, theta_from_spec
from scrapl_graph.graph import GraphSynth
from scrapl_graph.processors import ChirpletSynth
from _configs import JTFS_2048

N = 2048
CHIRPLET_ARGS = {"sample_rate": 2048, "num_samples": N, "f0_hz": 256, "max_shift": 0}
PROCESSORS = {
    "chirplet": {"class_path": "ChirpletSynth", "init_args": CHIRPLET_ARGS},
    "eq": {"class_path": "grafx.processors.ZeroPhaseFIREqualizer", "init_args": {"num_magnitude_bins": 65}},
}
CHAIN = {"num_samples": N, "processors": PROCESSORS, "chain": ["chirplet", "eq"]}
EDGES = {
    "num_samples": N,
    "processors": PROCESSORS,
    "nodes": {"a": "chirplet", "b": "chirplet", "eq1": "eq"},
    "edges": [["in", "a"], ["in", "b"], ["a", "eq1"], ["b", "eq1"], ["eq1", "out"]],
}
SMALL_SCRAPL = dict(JTFS_2048, use_p_adam=False, use_p_saga=False)


def hand_built(types, edges):
    """The GraphSynth of a graph built node by node: ``in``, ``types``, ``out``."""
    graph = GRAFX(config=NodeConfigs(["chirplet", "eq"]))
    ids = [graph.add("in")] + [graph.add(t) for t in types] + [graph.add("out")]
    for a, b in edges:
        graph.connect(ids[a], ids[b])
    processors = {"chirplet": ChirpletSynth(**CHIRPLET_ARGS), "eq": ZeroPhaseFIREqualizer(num_magnitude_bins=65)}
    return GraphSynth(graph, processors, num_samples=N)


def write(path, data):
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return str(path)


def random_theta(n_theta, seed=0):
    return torch.randn(1, n_theta, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_chain_config_renders_like_a_hand_built_graph(tmp_path, suffix):
    from scrapl_graph.io import load_config

    synth = build_graph_synth(load_config(write(tmp_path / f"graph{suffix}", CHAIN)))
    reference = hand_built(["chirplet", "eq"], [(0, 1), (1, 2), (2, 3)])
    assert synth.layout.labels() == reference.layout.labels()
    theta = random_theta(synth.n_theta)
    torch.testing.assert_close(synth(theta), reference(theta))


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_edges_config_renders_like_a_hand_built_graph(tmp_path, suffix):
    from scrapl_graph.io import load_config

    synth = build_graph_synth(load_config(write(tmp_path / f"graph{suffix}", EDGES)))
    reference = hand_built(["chirplet", "chirplet", "eq"], [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)])
    assert synth.layout.labels() == reference.layout.labels()
    theta = random_theta(synth.n_theta, seed=1)
    torch.testing.assert_close(synth(theta), reference(theta))


def test_short_alias_full_path_and_bare_class_path():
    spec = copy.deepcopy(CHAIN)
    spec["processors"]["chirplet"]["class_path"] = "scrapl_graph.processors.ChirpletSynth"
    spec["processors"]["shift"] = {"class_path": "TimeShift", "init_args": {"max_shift": 16}}
    spec["chain"] = ["chirplet", "eq", "shift"]
    synth = build_graph_synth(spec)
    assert type(synth.processors["shift"]).__name__ == "TimeShift"
    assert synth.n_theta == 2 + 65


def test_mix_and_extra_input_nodes():
    spec = {
        "num_samples": N,
        "processors": {"chirplet": PROCESSORS["chirplet"], "shift": "TimeShift"},
        "nodes": {"a": "chirplet", "in2": "in", "b": "chirplet", "m": "mix"},
        "edges": [["in", "a"], ["in2", "b"], ["a", "m"], ["b", "m"], ["m", "out"]],
    }
    synth = build_graph_synth(spec)  # "shift" has no node: allowed, it gets no columns
    assert synth.num_inputs == 2 and synth.n_theta == 4
    theta = theta_from_spec(synth, {"b": {"theta_am": 3.0}})
    assert theta[0, 0] == 0 and theta[0, 1] != 0
    assert synth(theta).shape == (1, 1, N)
    with pytest.raises(ValueError, match=r"node 'm' \(type 'mix'\) has no parameters"):
        theta_from_spec(synth, {"m": {"theta_am": 3.0}})


def test_theta_from_physical_values_round_trips():
    synth = build_graph_synth(CHAIN)
    theta = theta_from_spec(synth, {"chirplet": {"theta_am": 4.0, "theta_fm": 3.0}})
    assert theta.shape == (1, synth.n_theta) and theta.dtype == torch.get_default_dtype()
    phys = synth.processors["chirplet"].physical(theta_am=theta[:, 0], theta_fm=theta[:, 1])
    torch.testing.assert_close(phys["theta_am"], torch.tensor([4.0]))
    torch.testing.assert_close(phys["theta_fm"], torch.tensor([3.0]))
    assert torch.all(theta[:, 2:] == 0)  # EQ columns default to the middle


def test_theta_keys_labels_node_names_and_per_node_values():
    synth = build_graph_synth(EDGES)
    labels = synth.layout.labels()
    theta = theta_from_spec(synth, {
        "a": {"theta_am": 2.0},
        "b.theta_am": 5.0,
        "chirplet.theta_fm": [1.0, 6.0],
        "eq[0].log_magnitude[3]": 0.5,  # GRAFX processors take unconstrained values
    })
    phys = synth.processors["chirplet"].physical(theta_am=theta[0, :2], theta_fm=theta[0, 2:4])
    torch.testing.assert_close(phys["theta_am"], torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(phys["theta_fm"], torch.tensor([1.0, 6.0]))
    assert theta[0, labels.index("eq[0].log_magnitude[3]")] == 0.5
    same = theta_from_spec(synth, {"chirplet[0].theta_am[0]": 2.0, "chirplet[1].theta_am[0]": 5.0,
                                   "chirplet": {"theta_fm": [1.0, 6.0]}, "eq1.log_magnitude[3]": 0.5})
    torch.testing.assert_close(same, theta)


def test_theta_flat_list_and_none():
    synth = build_graph_synth(CHAIN)
    values = [0.1 * i for i in range(synth.n_theta)]
    torch.testing.assert_close(theta_from_spec(synth, values), torch.tensor([values]))
    torch.testing.assert_close(theta_from_spec(synth, None), torch.zeros(1, synth.n_theta))
    torch.testing.assert_close(theta_from_spec(synth, {}), torch.zeros(1, synth.n_theta))


@pytest.mark.parametrize("spec, error, match", [
    ({"chirplet": {"theta_am": 100.0}}, ValueError, r"theta\['chirplet'\]\['theta_am'\].*outside the range"),
    ({"reverb": {"x": 1.0}}, ValueError, "unknown node 'reverb'"),
    ({"chirplet": {"gain": 1.0}}, ValueError, "has no parameter 'gain'"),
    ({"chirplet[1]": {"theta_am": 2.0}}, ValueError, "does not exist"),
    ({"chirplet[0].theta_am[0]": 2.0, "chirplet": {"theta_am": 3.0}}, ValueError, "already set"),
    ({"eq.log_magnitude": [0.0, 1.0]}, ValueError, "expected 1 or 65 value"),
    ({"chirplet": 3.0}, TypeError, "mapping of parameter"),
    ({"chirplet": {"theta_am": "fast"}}, TypeError, "number"),
    ({"eq.log_magnitude[0]": float("nan")}, ValueError, "finite"),
    ([0.0, 1.0], ValueError, "67 values"),
    (["a"] * 67, TypeError, "list of 67 numbers"),
    ("chirplet", TypeError, "string"),
])
def test_theta_errors(spec, error, match):
    synth = build_graph_synth(CHAIN)
    with pytest.raises(error, match=match):
        theta_from_spec(synth, spec)


def test_load_run_config_with_scrapl(tmp_path):
    config = {
        "graph": CHAIN,
        "loss": {"class_path": "scrapl", "init_args": SMALL_SCRAPL},
        "target_theta": {"chirplet": {"theta_am": 4.0, "theta_fm": 3.0}},
        "trainable": ["chirplet"],
    }
    run = load_run_config(write(tmp_path / "run.yaml", config))
    assert isinstance(run["synth"], GraphSynth) and isinstance(run["loss"], SCRAPLLoss)
    assert run["trainable"] == [0, 1]
    assert run["theta_init"] is None
    phys = run["synth"].processors["chirplet"].physical(theta_am=run["target_theta"][:, 0])
    torch.testing.assert_close(phys["theta_am"], torch.tensor([4.0]))
    with torch.no_grad():
        target = run["synth"](run["target_theta"])
        value = run["loss"](run["synth"](torch.zeros(1, run["synth"].n_theta)), target)
    assert torch.isfinite(value) and value > 0


def test_load_run_config_by_name_in_json(tmp_path):
    config = {"graph": EDGES, "loss": "esr", "theta_init": [0.0] * 69, "trainable": "theta_am"}
    run = load_run_config(write(tmp_path / "run.json", config))
    assert run["trainable"] == [0, 1] and run["theta_init"].shape == (1, 69) and run["target_theta"] is None


def with_changes(base, **changes):
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


def processors_with(**changes):
    return with_changes(PROCESSORS, **changes)


@pytest.mark.parametrize("spec, error, match", [
    ([1, 2], TypeError, "graph must be a mapping"),
    (with_changes(CHAIN, sample_rate=8192), ValueError, r"unknown key\(s\) \['sample_rate'\]"),
    (with_changes(CHAIN, num_samples=None), ValueError, "graph.num_samples is missing"),
    (with_changes(CHAIN, num_samples=0), ValueError, "graph.num_samples must be a positive int"),
    (with_changes(CHAIN, num_samples=2048.0), ValueError, "graph.num_samples must be a positive int"),
    (with_changes(CHAIN, num_channels=True), ValueError, "graph.num_channels"),
    (with_changes(CHAIN, processors=None), ValueError, "graph.processors is missing"),
    (with_changes(CHAIN, processors={}), ValueError, "at least one processor"),
    (with_changes(EDGES, chain=["chirplet"]), ValueError, "not both"),
    (with_changes(CHAIN, chain=None), ValueError, "got neither"),
    (with_changes(CHAIN, chain=["chirplet", "reverb"]), ValueError, r"graph.chain\[1\]: unknown node type 'reverb'"),
    (with_changes(CHAIN, chain=[]), ValueError, "at least one node type"),
    (with_changes(CHAIN, chain="chirplet"), TypeError, "graph.chain must be a list"),
    (with_changes(CHAIN, processors=processors_with(eq={"init_args": {}})), ValueError,
     "graph.processors.eq: expected a class path or a mapping with 'class_path'"),
    (with_changes(CHAIN, processors=processors_with(eq={"class_path": "grafx.processors.NoSuchEq"})), ValueError,
     "graph.processors.eq: .*no attribute 'NoSuchEq'"),
    (with_changes(CHAIN, processors=processors_with(eq={"class_path": "ZeroPhaseFIREqualizer"})), ValueError,
     "graph.processors.eq: unknown name"),
    (with_changes(CHAIN, processors=processors_with(eq={"class_path": "torch.nn.Identity"})), TypeError,
     "graph.processors.eq: .*no parameter_size"),
    (with_changes(CHAIN, processors=processors_with(eq={"class_path": "collections.OrderedDict"})), TypeError,
     "graph.processors.eq: collections.OrderedDict is not a subclass of torch.nn.Module"),
    (with_changes(CHAIN, processors=processors_with(
        eq={"class_path": "grafx.processors.ZeroPhaseFIREqualizer", "init_args": {"bins": 3}})), TypeError,
     "graph.processors.eq: .*bins"),
    (with_changes(CHAIN, processors=processors_with(
        eq={"class_path": "grafx.processors.ZeroPhaseFIREqualizer", "init_args": [65]})), TypeError,
     "graph.processors.eq.init_args must be a mapping"),
    (with_changes(CHAIN, processors=processors_with(
        chirplet={"class_path": "ChirpletSynth", "init_args": {**CHIRPLET_ARGS, "num_samples": 1024}})),
     ValueError,
     "graph.processors.chirplet: num_samples=1024 differs"),
    (with_changes(CHAIN, processors=processors_with(mix="TimeShift")), ValueError, "utility node type"),
    (with_changes(CHAIN, processors=processors_with(**{"my.eq": "TimeShift"})), ValueError, "invalid name"),
    (with_changes(EDGES, nodes=None), ValueError, "graph.edges needs graph.nodes"),
    (with_changes(EDGES, edges=None), ValueError, "graph.nodes needs graph.edges"),
    (with_changes(EDGES, nodes={"a": "reverb"}), ValueError, "graph.nodes.a: unknown node type 'reverb'"),
    (with_changes(EDGES, nodes={"out": "eq"}), ValueError, "implicit"),
    (with_changes(EDGES, nodes={"eq": "chirplet"}), ValueError, "named after the processor type"),
    (with_changes(EDGES, edges=[["in", "a"], ["a", "eq2"]]), ValueError, r"graph.edges\[1\]: unknown node 'eq2'"),
    (with_changes(EDGES, edges=[["in", "a", "b"]]), ValueError, r"graph.edges\[0\] must be a \[source, destination\]"),
    (with_changes(EDGES, edges=[["out", "a"]]), ValueError, "'out' cannot be the source"),
    (with_changes(EDGES, edges=[["a", "in"]]), ValueError, "'in' cannot be the destination"),
    (with_changes(EDGES, edges=[["a", "a"]]), ValueError, "self edge"),
    (with_changes(EDGES, edges=EDGES["edges"] + [["a", "eq1"]]), ValueError, "duplicate edge"),
    (with_changes(EDGES, edges=[["in", "a"], ["a", "eq1"], ["eq1", "out"]]), ValueError,
     "node 'b' has no incoming edge"),
    (with_changes(EDGES, edges=EDGES["edges"][:4]), ValueError, "node 'eq1' has no outgoing edge"),
    (with_changes(EDGES, edges=EDGES["edges"] + [["eq1", "a"]]), ValueError, "cycle"),
])
def test_graph_errors(spec, error, match):
    with pytest.raises(error, match=match):
        build_graph_synth(spec)


@pytest.mark.parametrize("changes, error, match", [
    ({"optimizer": "adam"}, ValueError, r"unknown top-level key\(s\) \['optimizer'\]"),
    ({"loss": None}, ValueError, r"missing top-level key\(s\) \['loss'\]"),
    ({"loss": "nope"}, ValueError, "loss: unknown loss 'nope'"),
    ({"graph": {**CHAIN, "chain": ["nope"]}}, ValueError, r"graph.chain\[0\]"),
    ({"target_theta": {"chirplet": {"theta_fm": 50.0}}}, ValueError, "target_theta: theta"),
    ({"theta_init": [0.0]}, ValueError, "theta_init: theta: a flat theta must have 67 values"),
    ({"trainable": ["reverb"]}, ValueError, "trainable: no theta column matches 'reverb'"),
])
def test_run_config_errors(tmp_path, changes, error, match):
    config = with_changes({"graph": CHAIN, "loss": "esr"}, **changes)
    path = write(tmp_path / "run.yaml", config)
    with pytest.raises(error, match=match) as info:
        load_run_config(path)
    assert str(info.value).startswith(path)


def test_run_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_run_config(str(tmp_path / "missing.yaml"))
    path = tmp_path / "list.yaml"
    path.write_text("- graph\n")
    with pytest.raises(TypeError, match="must be a mapping"):
        load_run_config(str(path))
