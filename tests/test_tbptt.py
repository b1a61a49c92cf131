"""TBPTT over long signals: windows, warm-up and detached states, any registry loss, recovery of an LFO rate."""
import pytest
import torch

from scrapl_graph.graph import GraphSynth
from scrapl_graph.processors import Phaser, Tremolo
from scrapl_graph.train import sliding_windows, tbptt_memory_pass, tbptt_optimize

SR = 8000.0


def _tremolo_case(seconds=4.0, rate=4.0, depth=0.8):
    synth = GraphSynth.chain({"tremolo": Tremolo(SR, lfo_rate=(1.0, 8.0))}, num_samples=256)
    n = int(seconds * SR)
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0))
    true = torch.cat([v for v in synth.processors["tremolo"].unconstrained(
        lfo_rate=rate, lfo_depth=depth, lfo_phase=0.3).values()], 1)
    with torch.no_grad():
        y = synth.render(true, x)
    return synth, x, y, true


def test_sliding_windows():
    assert sliding_windows(10, 4, 3) == [0, 3, 6]
    with pytest.raises(ValueError):
        sliding_windows(3, 4, 1)


def test_tbptt_steps_once_per_lossed_sub_sequence():
    synth, x, y, true = _tremolo_case(seconds=1.0)
    result = tbptt_optimize(synth, x, y, "esr", sub_length=512, num_sub=3, batch_size=2,
                            epochs=2, true_theta=true, lr=0.01)
    sequences = len(sliding_windows(x.shape[-1], 3 * 512, 2 * 512))
    assert result.sequences == sequences
    assert result.steps == 2 * (-(-sequences // 2)) * 2
    assert len(result.history["param_error"]) == result.steps


SMALL_SCRAPL = {"class_path": "scrapl", "init_args": dict(shape=None, J=8, Q1=4, Q2=1, J_fr=2, Q_fr=1, T=None,
                                                         F=None, grad_mult=1.0e8)}


@pytest.mark.parametrize("loss", ["mss_linear", SMALL_SCRAPL, "jtfs"])
def test_tbptt_runs_any_registry_loss(loss):
    """Mechanics with every kind of loss: finite losses, theta moves, only the trainable columns."""
    synth, x, y, true = _tremolo_case(seconds=1.0)
    if loss == "mss_linear":
        loss = {"class_path": "multi_resolution_stft", "init_args": {"fft_sizes": [128, 256], "hop_sizes": [32, 64],
                                                                     "win_lengths": [128, 256]}}
    if loss == "jtfs":
        loss = {"class_path": "jtfs", "init_args": {k: v for k, v in SMALL_SCRAPL["init_args"].items()
                                                    if k in ("J", "Q1", "Q2", "J_fr", "Q_fr", "T", "F")} | {"shape": 1024}}
    theta0 = true.clone()
    theta0[0, 0] = 0.0
    result = tbptt_optimize(synth, x, y, loss, theta0, sub_length=1024, num_sub=3, trainable=[0, 1], lr=0.05,
                            max_steps=4, true_theta=true)
    assert result.steps == 4 and all(torch.isfinite(torch.tensor(result.history["loss"])))
    assert not torch.equal(result.theta[:, :2], theta0[:, :2])
    assert torch.equal(result.theta[:, 2:], theta0[:, 2:])


def test_memory_pass_runs_every_sub_sequence():
    synth = GraphSynth.chain({"phaser": Phaser(SR, block_size=32)}, num_samples=256)
    x = torch.randn(1, 1, 7 * 2048)
    assert tbptt_memory_pass(synth, x, x, "mss", sub_length=2048, num_sub=4) == 5


class _Recorder(torch.nn.Module):
    """Squared error that keeps every estimate batch it sees."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, estimate, target):
        self.seen.append(estimate.detach())
        return (estimate - target).square().mean()


@pytest.mark.parametrize("nuisance", [None, [2]])
def test_nuisance_columns_are_drawn_per_sequence_and_never_trained(nuisance):
    synth, _, _, true = _tremolo_case(seconds=1.0)
    x = torch.ones(1, 1, 8000)  # every sequence sees the same input: only the LFO's phase can tell them apart
    recorder = _Recorder()
    result = tbptt_optimize(synth, x, torch.zeros_like(x), recorder, true, sub_length=512, num_sub=3, hop=512,
                            batch_size=4, trainable=[1], nuisance=nuisance, max_steps=2, lr=0.01, optimizer="sgd")
    first = recorder.seen[0]
    distinct = {tuple(row.flatten()[:64].tolist()) for row in first}
    assert len(distinct) == (4 if nuisance else 1)
    assert result.theta[0, 2] == true[0, 2]  # the drawn phase is never written back


def test_a_column_cannot_be_trainable_and_nuisance():
    synth, x, y, true = _tremolo_case(seconds=1.0)
    with pytest.raises(ValueError, match="both trainable and nuisance"):
        tbptt_optimize(synth, x, y, "esr", true, sub_length=512, num_sub=3, trainable=[0, 2], nuisance=[2])


def test_tail_average_is_the_mean_of_the_last_iterates():
    synth, x, y, true = _tremolo_case(seconds=1.0)
    kwargs = dict(sub_length=512, num_sub=3, batch_size=2, trainable=[0, 1], lr=0.05)
    # Seeded shuffling and no learning-rate schedule: the run of k steps ends at the k-th iterate of a longer one.
    iterates = [tbptt_optimize(synth, x, y, "esr", max_steps=k, **kwargs).theta for k in (3, 4)]
    averaged = tbptt_optimize(synth, x, y, "esr", max_steps=4, average_tail=0.5, **kwargs)
    assert not torch.equal(iterates[0], iterates[1])
    torch.testing.assert_close(averaged.theta, (iterates[0] + iterates[1]) / 2)
    assert torch.equal(tbptt_optimize(synth, x, y, "esr", max_steps=4, average_tail=0.0, **kwargs).theta, iterates[1])
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match="average_tail"):
            tbptt_optimize(synth, x, y, "esr", max_steps=4, average_tail=bad, **kwargs)
