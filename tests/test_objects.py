"""Objects from class_path specs through jsonargparse, and config files through its loaders."""
import json
import warnings

import pytest
import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from grafx.processors import ZeroPhaseFIREqualizer

from scrapl_graph.config import PROCESSOR_ALIASES, build_graph_synth
from scrapl_graph.io import build_object, class_path_of, load_config
from scrapl_graph.losses import SCRAPLLoss, build_loss
from scrapl_graph.processors import ChirpletSynth, TimeShift
from _configs import JTFS_2048

N = 2048
CHIRPLET_ARGS = {"sample_rate": 2048, "num_samples": N, "f0_hz": 256, "max_shift": 0}


class Gained(nn.Module):
    """A GRAFX processor wrapping another one: a class whose init_args hold a nested spec."""

    def __init__(self, inner: nn.Module, gain: float = 1.0):
        super().__init__()
        self.inner, self.gain = inner, gain

    def parameter_size(self):
        return self.inner.parameter_size()

    def forward(self, *args, **kwargs):
        return self.gain * self.inner(*args, **kwargs)


class Judged(nn.Module):
    """A loss wrapping another loss, untyped: jsonargparse builds a nested spec for it too."""

    def __init__(self, base=None, scale: float = 1.0):
        super().__init__()
        self.base, self.scale = base, scale


GAINED = class_path_of(Gained)


def test_bare_class_path_full_path_and_alias():
    assert isinstance(build_object("torch.nn.Identity"), nn.Identity)
    eq = build_object({"class_path": "grafx.processors.ZeroPhaseFIREqualizer", "init_args": {"num_magnitude_bins": 33}})
    assert isinstance(eq, ZeroPhaseFIREqualizer) and eq.parameter_size()["log_magnitude"] == 33
    shift = build_object({"class_path": "TimeShift", "init_args": {"max_shift": 16}}, aliases=PROCESSOR_ALIASES)
    assert isinstance(shift, TimeShift) and shift.max_shift == 16


def test_alias_given_as_a_spec_supplies_default_init_args():
    aliases = {"small": {"class_path": "torch.nn.Linear", "init_args": {"in_features": 2, "out_features": 3}}}
    assert build_object("small", aliases=aliases).out_features == 3
    linear = build_object({"class_path": "small", "init_args": {"out_features": 5, "bias": False}}, aliases=aliases)
    assert (linear.in_features, linear.out_features, linear.bias) == (2, 5, None)
    assert aliases["small"]["init_args"] == {"in_features": 2, "out_features": 3}  # left as it was


def test_nested_spec_with_an_alias_in_a_graph_config():
    spec = {"num_samples": N, "chain": ["chirplet"], "processors": {
        "chirplet": {"class_path": GAINED, "init_args": {"gain": 0.5, "inner": {
            "class_path": "ChirpletSynth", "init_args": CHIRPLET_ARGS}}}}}
    synth = build_graph_synth(spec)
    wrapper = synth.processors["chirplet"]
    assert isinstance(wrapper, Gained) and isinstance(wrapper.inner, ChirpletSynth) and wrapper.gain == 0.5
    plain = build_graph_synth({**spec, "processors": {"chirplet": {"class_path": "ChirpletSynth",
                                                                   "init_args": CHIRPLET_ARGS}}})
    theta = torch.randn(1, synth.n_theta, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(synth(theta), 0.5 * plain(theta))


def test_nested_specs_for_untyped_parameters_and_in_mappings():
    eq = {"class_path": "grafx.processors.ZeroPhaseFIREqualizer", "init_args": {"num_magnitude_bins": 33}}
    dry_wet = build_object({"class_path": "grafx.processors.DryWet", "init_args": {"processor": eq}})
    assert isinstance(dry_wet.processor, ZeroPhaseFIREqualizer)
    chain = build_object({"class_path": "grafx.processors.SerialChain",
                          "init_args": {"processors": {"eq": eq, "shift": {"class_path": "TimeShift"}}}}, aliases=PROCESSOR_ALIASES)
    assert isinstance(chain.processors["eq"], ZeroPhaseFIREqualizer)
    # jsonargparse alone would hand DryWet the spec it cannot build as a dict.
    with pytest.raises(TypeError, match=r"^object\.init_args\.processor: .*does not accept option 'bins'"):
        build_object({"class_path": "grafx.processors.DryWet",
                      "init_args": {"processor": {**eq, "init_args": {"bins": 3}}}})


def test_parameters_not_given_keep_the_constructor_defaults():
    layer = build_object({"class_path": "torch.nn.TransformerEncoderLayer", "init_args": {"d_model": 8, "nhead": 2}})
    assert layer.activation_relu_or_gelu == 1  # its default activation, F.relu, as the function


def test_python_objects_pass_as_init_args():
    inner = nn.Tanh()
    assert build_object({"class_path": GAINED, "init_args": {"inner": inner}}).inner is inner


@pytest.mark.parametrize("spec, error, match", [
    # A misspelled init_arg: named, after the config path, with the class it does not fit.
    ({"class_path": "grafx.processors.ZeroPhaseFIREqualizer", "init_args": {"num_magnitude_bin": 65}}, TypeError,
     r"^graph\.processors\.eq: grafx\.processors\.ZeroPhaseFIREqualizer does not accept option 'num_magnitude_bin'"),
    ({"class_path": "ChirpletSynth", "init_args": {**CHIRPLET_ARGS, "num_samples": 2048.0}}, TypeError,
     r"^graph\.processors\.eq\.init_args\.num_samples: Expected a <class 'int'>"),
    ({"class_path": GAINED, "init_args": {"inner": {"class_path": "TimeShift", "init_args": {"max_shfit": 3}}}},
     TypeError, r"^graph\.processors\.eq\.init_args\.inner: TimeShift does not accept option 'max_shfit'"),
    ({"class_path": GAINED}, TypeError, r"^graph\.processors\.eq: .*required: init_args\.inner"),
    ({"class_path": GAINED, "init_args": {"inner": {"class_path": "Identity"}}}, ValueError,
     r"^graph\.processors\.eq\.init_args\.inner: unknown name 'Identity'; use 'module\.Class' or one of"),
    ({"class_path": GAINED, "init_args": {"inner": {"class_path": "torch.nn.Tanh", "init_args": [1]}}}, TypeError,
     r"^graph\.processors\.eq\.init_args\.inner\.init_args must be a mapping"),
    ({"class_path": "no_such_module.Eq"}, ValueError,
     r"^graph\.processors\.eq: cannot import 'no_such_module\.Eq': No module named 'no_such_module'"),
    ({"class_path": GAINED, "init_args": {"inner": {"class_path": "torch.nn.NoSuchLayer"}}}, ValueError,
     r"^graph\.processors\.eq\.init_args\.inner: cannot import 'torch\.nn\.NoSuchLayer'"),
    ({"class_path": "torch.optim.SGD"}, TypeError, r"^graph\.processors\.eq: torch\.optim\.SGD is not a subclass of torch\.nn\.Module"),
    ({"class_path": "ChirpletSynth", "init_args": {**CHIRPLET_ARGS, "f0_hz": 4096}}, ValueError,
     r"^graph\.processors\.eq: f0_hz=4096.0 must be below Nyquist"),  # the constructor's own error
    ({"class_path": "ChirpletSynth", "extra": {}}, ValueError, r"^graph\.processors\.eq: expected a class path"),
    ({"class_path": 3}, TypeError, r"^graph\.processors\.eq\.class_path must be a string"),
    (3, TypeError, r"^graph\.processors\.eq must be a class path or a mapping"),
])
def test_errors_name_the_config_path(spec, error, match):
    with pytest.raises(error, match=match) as info:
        build_object(spec, where="graph.processors.eq", aliases=PROCESSOR_ALIASES)
    assert "\n" not in str(info.value)


def test_registry_names_in_class_path():
    mss = build_loss({"class_path": "mss", "init_args": {"w_sc": 0.5}})
    assert list(mss.fft_sizes) == [64, 128, 256, 512, 1024, 2048] and mss.stft_losses[0].w_sc == 0.5
    loss = build_loss({"class_path": "SCRAPL", "init_args": dict(JTFS_2048, use_p_adam=False)})
    assert isinstance(loss, SCRAPLLoss)
    judged = build_loss({"class_path": class_path_of(Judged), "init_args": {"base": {"class_path": "esr"}}})
    assert type(judged.base).__name__ == "ESRLoss"


def test_loss_arguments_checked_against_the_signature():
    with pytest.raises(TypeError, match=r"^loss: scrapl does not accept option 'Q'"):
        build_loss("scrapl", shape=N, Q=3)
    with pytest.raises(TypeError, match=r"^loss\.init_args\.J: Expected a <class 'int'>"):
        build_loss({"class_path": "jtfs", "init_args": {"shape": N, "J": "six"}})
    with pytest.raises(TypeError, match=r"^loss: the following arguments are required: init_args\.shape"):
        build_loss("jtfs")
    with pytest.raises(TypeError, match=r"^loss: mss does not accept option 'fft_size'"):
        build_loss("mss", fft_size=512)


@pytest.mark.parametrize("name, text, match", [
    ("bad.json", '{"graph": 1 "loss": 2}', r"bad\.json: invalid JSON at line 1, column 13: Expecting ','"),
    ("bad.yaml", "graph:\n  num_samples: [1, 2\nloss: x\n", r"bad\.yaml: invalid YAML at line 3, column \d+: "),
    ("bad.yml", "a: b: c\n", r"bad\.yml: invalid YAML at line 1, column 5: "),
    ("graph.toml", "a = 1\n", "must be .json, .yaml or .yml"),
])
def test_load_config_errors(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_config(str(path))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_load_config_reads_json_and_yaml_alike(tmp_path):
    data = {"loss": {"class_path": "scrapl", "init_args": {"log1p_eps": 0.001, "J": 6}}, "theta_init": None}
    (tmp_path / "run.json").write_text(json.dumps(data))
    (tmp_path / "run.yaml").write_text("loss: {class_path: scrapl, init_args: {log1p_eps: 1e-3, J: 6}}\n"
                                       "theta_init: null\n")
    assert load_config(str(tmp_path / "run.json")) == load_config(str(tmp_path / "run.yaml")) == data
