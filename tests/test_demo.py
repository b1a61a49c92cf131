"""The built-in demo in process, with tiny settings: outputs, finite results, settings checks."""
import json
import math
import os

import pytest

from scrapl_graph.demo import METHODS, DemoConfig, format_table, run_demo


def tiny(out_dir, **kwargs) -> DemoConfig:
    settings = dict(out_dir=str(out_dir), n=2048, sample_rate=2048.0, J=3, steps=3, jtfs_steps=1, max_shift=100,
                    warmup_iters=2, progress=False)
    settings.update(kwargs)
    return DemoConfig(**settings)


def test_run_demo_writes_every_output_with_finite_results(tmp_path):
    cfg = tiny(tmp_path / "demo")
    results = run_demo(cfg)
    out = tmp_path / "demo"
    assert [r.name for r in results] == list(METHODS)
    for r in results:
        assert r.steps == (cfg.jtfs_steps if r.name == "jtfs" else cfg.steps)
        assert 2.0 <= r.am_hz <= 8.0 and 2.0 <= r.fm_oct <= 4.0  # inside the synth's ranges
        assert all(math.isfinite(v) for v in (r.am_error, r.fm_error, r.seconds))
        assert len(r.history["loss"]) == r.steps and all(math.isfinite(v) for v in r.history["loss"])
        assert (out / f"estimate_{r.name}.wav").stat().st_size > 4000
    for name in ("target.wav", "loss_curves.png", "path_probs.png", "results.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "warmup" / "probs.pt").exists()  # SCRAPL drew its paths from a theta-IS warmup
    summary = json.loads((out / "results.json").read_text())
    assert summary["target"] == {"am_hz": cfg.am_hz, "fm_oct": cfg.fm_oct}
    assert [r["name"] for r in summary["results"]] == list(METHODS)
    assert [r["am_hz"] for r in summary["results"]] == pytest.approx([r.am_hz for r in results])
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]
    table = format_table(cfg, results).splitlines()
    assert len(table) == 2 + len(METHODS) and [line.split()[0] for line in table[2:]] == list(METHODS)


def test_run_demo_scrapl_with_uniform_paths(tmp_path):
    results = run_demo(tiny(tmp_path, methods=("scrapl",), warmup=False, steps=2))
    assert [r.name for r in results] == ["scrapl"]
    assert (tmp_path / "path_probs.png").exists() and not (tmp_path / "warmup").exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=1024, J=11), "shorter than 2\\*\\*J"),
    (dict(methods=("scrapl", "nope")), "subset of"),
    (dict(methods=()), "subset of"),
    (dict(fm_oct=4.5), "fm_oct=4.5 must lie inside"),
    (dict(jtfs_steps=0), "steps"),
    (dict(max_shift=1024), "max_shift"),
])
def test_bad_settings_are_refused_before_running(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_demo(tiny(tmp_path / "never", **kwargs))
    assert not (tmp_path / "never").exists()
