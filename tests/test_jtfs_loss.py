"""The full-tree JTFS loss: value, gradient of the chunked evaluation, input checks."""
import pytest
import torch

from scrapl_graph import JTFSLoss
from scrapl_graph.losses import path_distance
from _configs import JTFS_1024

CONFIG = JTFS_1024


def reference_loss(loss, x, y):
    """Plain autograd through the whole tree: mean over examples and paths of the per-path distance."""
    jtfs = loss.jtfs
    S, S_y = jtfs(x.flatten(0, 1)), jtfs(y.flatten(0, 1))
    return path_distance(S, S_y, loss.p, loss.log1p_eps).mean()


@pytest.mark.parametrize("kwargs", [{}, dict(p=1.0), dict(use_rho_log1p=True, log1p_eps=1e-2)])
def test_chunked_loss_matches_plain_autograd(kwargs):
    # Small chunks force several chunks per n2.
    loss = JTFSLoss(**CONFIG, chunk_elements=2**12, **kwargs).double()
    assert len(loss.path_chunks(4)) > len({p.n2 for p in loss.jtfs.paths})
    x = torch.randn(2, 2, 1024, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 2, 1024, dtype=torch.float64)
    value = loss(x, y)
    (g,) = torch.autograd.grad(value, x)
    expected = reference_loss(loss, x, y)
    (g_ref,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    assert (g - g_ref).norm() / g_ref.norm() < 1e-10


def test_loss_without_grad_and_with_first_order():
    loss = JTFSLoss(**CONFIG).double()
    x = torch.randn(1, 1, 1024, dtype=torch.float64)
    y = torch.randn(1, 1, 1024, dtype=torch.float64)
    with torch.no_grad():
        base = loss(x, y)
    torch.testing.assert_close(base, reference_loss(loss, x, y))
    assert loss(y, y) == 0
    full = JTFSLoss(**CONFIG, first_order=True).double()
    S1 = path_distance(full.jtfs.first_order(x[:, 0]), full.jtfs.first_order(y[:, 0]))
    n2 = full.jtfs.n_paths
    expected = (base * n2 + S1.sum()) / (n2 + S1.shape[1])
    torch.testing.assert_close(full(x, y), expected)


def test_silent_estimate_has_finite_gradient():
    loss = JTFSLoss(**CONFIG)
    x = torch.zeros(2, 1, 1024, requires_grad=True)
    y = torch.randn(2, 1, 1024)
    loss(x, y).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "x, y, error, match",
    [
        (torch.randn(1, 1024), torch.randn(1, 1024), ValueError, "batch, channels, samples"),
        (torch.randn(2, 1, 1024), torch.randn(1, 1, 1024), ValueError, "same shape"),
        (torch.randn(1, 1, 1000), torch.randn(1, 1, 1000), ValueError, "expected shape=1024"),
        (torch.randn(1, 1, 1024), torch.full((1, 1, 1024), float("nan")), ValueError, "NaN or Inf"),
        (torch.ones(1, 1, 1024, dtype=torch.long), torch.ones(1, 1, 1024, dtype=torch.long), TypeError, "floating"),
    ],
)
def test_bad_input(x, y, error, match):
    with pytest.raises(error, match=match):
        JTFSLoss(**CONFIG)(x, y)
