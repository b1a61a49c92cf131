"""compare="batch_mean": the losses compare the batch's mean coefficients, not each example."""
import pytest
import torch

from scrapl_graph import JTFS, JTFSLoss, SCRAPLLoss
from scrapl_graph.losses import build_loss
from scrapl_graph.losses.distance import path_distance
from scrapl_graph.losses.scrapl_theta_is import path_loss
from _configs import TINY, TINY_N


def signals(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, TINY_N, generator=g, dtype=torch.float64)
    y = torch.randn(batch, 1, TINY_N, generator=g, dtype=torch.float64)
    return x, y


def mean_distances(x, y):
    """Per-path distance between the batch means, from the transform directly."""
    jtfs = JTFS(TINY_N, **TINY, dtype=torch.float64)
    return path_distance(jtfs(x[:, 0]).mean(0), jtfs(y[:, 0]).mean(0))


def test_full_jtfs_loss_of_batch_means():
    x, y = signals()
    loss = JTFSLoss(TINY_N, **TINY, compare="batch_mean").double()
    torch.testing.assert_close(loss(x, y), mean_distances(x, y).mean())
    # Not the mean of the per-example distances.
    assert not torch.allclose(loss(x, y), JTFSLoss(TINY_N, **TINY).double()(x, y))


def test_scrapl_path_loss_of_batch_means_and_its_gradient():
    x, y = signals()
    x.requires_grad_(True)
    loss = SCRAPLLoss(TINY_N, **TINY, compare="batch_mean").double()
    for p in range(loss.n_paths):
        value = loss(x, y, path_idx=p)
        torch.testing.assert_close(value, mean_distances(x, y)[p])
    # The gradient reaches every example, as the mean does.
    grad, = torch.autograd.grad(loss(x, y, path_idx=0), x)
    assert (grad.flatten(1).abs().sum(1) > 0).all()


def test_one_example_batch_mean_is_the_per_example_loss():
    x, y = signals(batch=1)
    for cls in (JTFSLoss, SCRAPLLoss):
        a = cls(TINY_N, **TINY, compare="batch_mean").double()
        b = cls(TINY_N, **TINY).double()
        torch.testing.assert_close(a(x, y, **({"path_idx": 2} if cls is SCRAPLLoss else {})),
                                   b(x, y, **({"path_idx": 2} if cls is SCRAPLLoss else {})))


def test_theta_is_path_loss_compares_each_copy_of_the_batch_by_its_mean():
    x, y = signals()
    loss = SCRAPLLoss(TINY_N, **TINY, compare="batch_mean").double()
    one = path_loss(loss)(x, y, 1, 1)
    torch.testing.assert_close(one, loss(x, y, path_idx=1))
    torch.testing.assert_close(path_loss(loss)(torch.cat([x, x]), y, 1, 2), 2 * one)


def test_registry_builds_it_and_bad_values_are_refused():
    loss = build_loss({"class_path": "scrapl", "init_args": dict(shape=TINY_N, **TINY, compare="batch_mean")})
    assert loss.path_set.compare == "batch_mean"
    for cls in (JTFSLoss, SCRAPLLoss):
        with pytest.raises(ValueError, match="compare must be one of"):
            cls(TINY_N, **TINY, compare="mean")
