"""The drum decay experiment: its loudness metric against analytic cases, its targets, and a smoke run."""
import math

import pytest
import torch

from scrapl_graph.experiments import drum_decay as dd
from scrapl_graph.train.loudness import frame_levels_db, frame_loudness_error

SR = 11025


def decaying_tone(n=8192, decay_s=0.2, onset=0, amp=1.0):
    t = torch.arange(n - onset, dtype=torch.float64) / SR
    tone = amp * torch.sin(2 * math.pi * 440 * t) * torch.exp(-t / decay_s)
    return torch.cat([torch.zeros(onset, dtype=torch.float64), tone])[None]


def test_frame_levels_of_a_constant_are_its_level():
    levels = frame_levels_db(torch.full((1, 4096), 0.1, dtype=torch.float64), 256, 64)
    assert torch.allclose(levels, torch.full_like(levels, -20.0))


def test_identical_and_shifted_signals_have_no_loudness_error():
    x = decaying_tone()
    err = frame_loudness_error(x, x, SR)
    assert err["transient"].item() == 0 and err["decay"].item() == 0
    shifted = frame_loudness_error(decaying_tone(onset=300), x, SR)  # onset alignment removes the shift
    assert shifted["transient"].item() < 0.05 and shifted["decay"].item() < 0.05


def test_a_gain_shows_as_its_level_in_both_parts():
    x = decaying_tone()
    err = frame_loudness_error(0.5 * x, x, SR)
    for part in ("transient", "decay"):
        assert err[part].item() == pytest.approx(20 * math.log10(2), abs=1e-6)


def test_a_faster_decay_shows_in_the_decay_more_than_in_the_transient():
    err = frame_loudness_error(decaying_tone(decay_s=0.1), decaying_tone(decay_s=0.2), SR)
    assert err["decay"].item() > 5 * err["transient"].item() > 0
    # An audible decay far below the target's peak is floored, not unbounded.
    assert err["decay"].item() < 80


def test_loudness_error_checks_its_input():
    with pytest.raises(ValueError, match="same non-empty shape"):
        frame_loudness_error(torch.zeros(1, 100), torch.zeros(1, 101), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        frame_loudness_error(torch.zeros(1, 100), torch.zeros(1, 100), 0)


def small_config(**overrides):
    cfg = dd.DrumDecayConfig(num_samples=4096, targets_per_preset=1, steps=2, **overrides)
    cfg.jtfs.update(J=9, T=256)
    return cfg


def test_targets_move_only_the_decays_and_levels():
    cfg = small_config(move=1.5)
    synth = dd.drum_synth(cfg, False, 0)
    init, target = dd.make_targets(synth, cfg, seed=3)
    cols = dd.decay_level_columns(synth)
    labels = synth.layout.labels()
    assert sorted(labels[c].split(".")[1].split("[")[0] for c in cols) == sorted(dd.DECAY_LEVEL)
    moved = (target - init).abs()
    rest = [i for i in range(synth.n_theta) if i not in cols]
    assert moved[:, rest].max() == 0
    assert moved[:, cols].min() >= 0.5 - 1e-6 and moved[:, cols].max() <= 1.5 + 1e-6
    assert not torch.equal(target, dd.make_targets(synth, cfg, seed=4)[1])  # each seed has its own targets


@pytest.mark.parametrize("loss", ["scrapl_first_order", "mss"])
def test_a_match_reports_every_target(loss):
    rows = dd.match(small_config(), loss, "meso", 0)
    assert [r["preset"] for r in rows] == list(dd.PRESETS)
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("decay_level_permille", "rest_permille", "seconds"))
    table = dd.summarize(rows)
    assert f"| meso | {loss} | 1 |" in table


def test_match_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown loss"):
        dd.match(small_config(), "nope", "meso", 0)
    with pytest.raises(ValueError, match="unknown setting"):
        dd.match(small_config(), "mss", "sideways", 0)


@pytest.mark.slow
def test_drum_decay_example_runs_end_to_end(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "examples" / "drum_decay.py"), "--out", str(tmp_path),
                          "--steps", "3", "--seeds", "0", "1", "--jtfs-seeds", "0", "--targets-per-preset", "1",
                          "--num-samples", "4096", "--J", "9"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "first-order paths" in out.stdout
    for loss in dd.DEFAULT_LOSSES:
        assert f"| aligned | {loss} |" in out.stdout and f"| meso | {loss} |" in out.stdout
    assert (tmp_path / "results.csv").exists() and (tmp_path / "results.md").exists()
