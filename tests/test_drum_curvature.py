"""theta-IS curvature on the drum task: the per-example Hessian diagonal is what the warmup finds."""
import pytest
import torch
from torch import nn

from scrapl_graph.experiments import drum_curvature as dc
from scrapl_graph.experiments import drum_decay as dd


def small_config():
    cfg = dd.DrumDecayConfig(num_samples=2048, targets_per_preset=1, steps=2)
    cfg.jtfs.update(J=7, T=128)
    return cfg


def test_curvature_is_the_warmups_eigenvalue():
    cfg = small_config()
    synth, theta_init, _, target = dd.seed_problem(cfg, "aligned", 0)
    loss = dd._scrapl(cfg, synth.n_theta, first_order_share="uniform")
    paths = [0, loss.n_paths - 1]  # one of each order
    curv = dc.path_curvature(cfg, 0, examples=[1], paths=paths)
    assert curv["order"].tolist() == [2, 1]
    theta = nn.Parameter(theta_init[[1]].clone())
    for row, p in enumerate(paths):
        eigs = loss.calc_theta_eigs(p, lambda x: theta, synth, {"x": target[[1]]}, [theta], n_iter=30, tol=1e-7,
                                    theta_hessian="per_example")
        torch.testing.assert_close(curv["curvature"][row], eigs[0].abs().double(), rtol=1e-3, atol=1e-6)


def test_rank_correlation_and_mixture():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert dc.rank_correlation(a, a ** 3) == pytest.approx(1.0)
    assert dc.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert dc.rank_correlation(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 5.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same length"):
        dc.rank_correlation(a, a[:3])
    curv = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # (paths, U)
    torch.testing.assert_close(dc.theta_is_mixture(curv), torch.tensor([0.125, 0.875]))
    torch.testing.assert_close(dc.theta_is_mixture(curv, [1]), torch.tensor([0.0, 1.0]))


def test_summary_refuses_other_paths():
    curv = {"order": torch.tensor([2, 1]), "curvature": torch.ones(2, 3), "decay_columns": torch.tensor([0]),
            "seconds": torch.ones(2)}
    grads = {"order": torch.tensor([2, 2]), "decay_norm": torch.ones(2)}
    with pytest.raises(ValueError, match="same paths"):
        dc.summarize_curvature(curv, grads)
    with pytest.raises(ValueError, match="examples"):
        dc.path_curvature(small_config(), 0, examples=[9])


@pytest.mark.slow
def test_curvature_report_is_computed_once_and_summarized(tmp_path):
    cfg = small_config()
    report = dc.curvature_report(cfg, str(tmp_path))
    assert "theta-IS mass" in report and "Spearman" in report
    saved = torch.load(tmp_path / "curvature_seed_0.pt")
    curv = saved["curvature"]["curvature"]
    assert curv.shape[1] == 14 and bool((curv >= 0).all()) and bool((curv > 0).any())
    assert dc.curvature_report(cfg, str(tmp_path)) == report  # read back, not recomputed
