"""The scattering encoder: JTFS features and an MLP head, fixed or learnable filters, built from a config."""
import os

import pytest
import torch

from scrapl_graph.encoders import ScatteringEncoder
from scrapl_graph.io import build_object

SMALL = dict(n_samples=1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1, hidden=16)


def test_shapes_and_features_share_the_loss_path_indices():
    enc = ScatteringEncoder(n_theta=3, paths=[0, 5], **SMALL)
    x = torch.randn(2, 1, 1024)
    assert enc(x).shape == (2, 3)
    features = enc.features(x)
    assert features.shape[:2] == (2, enc.jtfs.n_first_order + 2)
    expected = torch.log1p(enc.jtfs.paths_coefficients(x[:, 0], [5]) / enc.eps)[:, 0]
    torch.testing.assert_close(features[:, -1], expected)


def test_learnable_filters_train_with_the_head():
    torch.manual_seed(0)
    enc = ScatteringEncoder(n_theta=2, learnable=("psi1",), **SMALL)
    x, theta = torch.randn(4, 1, 1024), torch.randn(4, 2)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = (enc(x) - theta).square().mean()
        loss.backward()
        if not losses:
            assert enc.jtfs.filterbank.psi1.raw_xi.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    fixed = ScatteringEncoder(n_theta=2, **SMALL)
    assert not any(p.requires_grad for p in fixed.jtfs.parameters())
    assert sum(p.numel() for p in fixed.parameters()) == sum(p.numel() for p in fixed.head.parameters())


def test_built_from_a_class_path_spec_and_bad_paths_refused():
    enc = build_object({"class_path": "scrapl_graph.encoders.ScatteringEncoder",
                        "init_args": dict(n_theta=2, paths="none", **SMALL)})
    assert enc(torch.randn(1, 2, 1024)).shape == (1, 2)
    with pytest.raises(ValueError, match="paths must be"):
        ScatteringEncoder(n_theta=2, paths="some", **SMALL)
    with pytest.raises(ValueError):
        ScatteringEncoder(n_theta=2, paths=[10**6], **SMALL)
    with pytest.raises(ValueError, match="batch, channels, samples"):
        enc(torch.randn(2, 1024))


def test_a_training_run_draws_the_filterbank_at_start_and_end(tmp_path):
    pytest.importorskip("lightning.pytorch")
    from scrapl_graph.graph import GraphSynth
    from scrapl_graph.lightning import FilterbankPictures, train_predictor
    from scrapl_graph.processors import ChirpletSynth

    chirplet = ChirpletSynth.from_preset("fast_am_moderate_fm", sample_rate=1024.0, num_samples=1024, f0_hz=128.0,
                                         max_shift=0)
    synth = GraphSynth.chain({"chirplet": chirplet}, num_samples=1024)
    theta = torch.logit(torch.rand(4, 2, generator=torch.Generator().manual_seed(0)).clamp(0.05, 0.95))
    with torch.no_grad():
        audio = synth(theta)
    encoder = ScatteringEncoder(n_theta=synth, learnable=True, **SMALL)
    pictures = FilterbankPictures(str(tmp_path))
    from scrapl_graph import JTFSLoss

    loss = JTFSLoss(1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1)
    train_predictor(encoder, synth, loss, (audio, theta), epochs=1, batch_size=4, lr=1e-3, val_metrics=(),
                    progress=False, accelerator="cpu", callbacks=[pictures], root_dir=str(tmp_path))
    names = sorted(os.path.basename(p) for p in pictures.written)
    assert names == ["filterbank_0_init.png", "filterbank_0_trained.png"]
    assert all(os.path.getsize(p) > 1000 for p in pictures.written)
    # Training moved the filters: the picture at the end is not the one at the start.
    assert open(pictures.written[0], "rb").read() != open(pictures.written[1], "rb").read()
