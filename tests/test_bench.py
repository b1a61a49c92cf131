"""The benchmark: its table, timing and memory helpers, a tiny run, and (slow) peaks taken in fresh processes."""
import logging
import math
import multiprocessing
import os
from types import SimpleNamespace

import pytest
import torch

from scrapl_graph import bench
from scrapl_graph.cli import main


def test_table_formats_rows_and_finds_them():
    result = bench.BenchResult("machine: test", [bench.Row("a", 1.234, 5.6, "a note"), bench.Row("b", float("nan"))])
    lines = result.table().splitlines()
    assert lines[0] == "machine: test" and "time (ms)" in lines[2] and "peak (MB)" in lines[2]
    assert lines[3].split() == ["a", "1.2", "6", "a", "note"]
    assert lines[4].split() == ["b"]  # no time (NaN) and no peak: blank cells
    assert result.get("a").peak_mb == 5.6 and result.get("c") is None


def test_time_step_warms_up_then_keeps_the_best(monkeypatch):
    clock = [0.0]
    durations = iter([5.0, 3.0, 1.0, 2.0])  # the first call is the warm-up and is not timed

    def step():
        clock[0] += next(durations)

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    assert bench.time_step(step, torch.device("cpu"), repeats=3) == 1.0
    with pytest.raises(StopIteration):
        step()  # exactly 1 + repeats calls


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for the resident size")
def test_peak_memory_sees_an_allocation_inside_the_block():
    memory = bench.PeakMemory(torch.device("cpu"))
    with memory.measure():
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, every page written
    assert memory.peak_bytes >= 32 * 2**20
    del block


def test_tiny_run_times_each_step(monkeypatch):
    kinds = []
    # Peaks are measured in spawned processes (the slow test below): stubbed here.
    monkeypatch.setattr(bench, "fresh_peak", lambda kind, *args, **kwargs: kinds.append(kind) or 1.0)
    result = bench.run(batch=1, n=4096, path_stride=100, repeats=1, full_tree=False, reference=False,
                       memory_toy=False)
    assert [r.name for r in result.rows] == [
        "auraloss MSS (6 resolutions, 64..2048)", "ours: SCRAPL step (one path)",
        "ours: SCRAPL step, fixed target (cached)", "ours: model step, P-Adam/P-SAGA off",
        "ours: model step, P-Adam/P-SAGA on"]
    assert all(math.isfinite(r.ms) and r.ms > 0 for r in result.rows)
    assert "median over 4 of 315 paths" in result.get("ours: SCRAPL step (one path)").note
    assert kinds == ["mss", "scrapl"] and result.get("ours: SCRAPL step (one path)").peak_mb == 1.0
    assert "batch 1, N=4096" in result.machine and "torch threads" in result.machine
    from scrapl_graph.jtfs import planned_fft
    assert ("FFT plans kept (MKL)" in result.machine) == planned_fft.available()
    assert len(result.table().splitlines()) == 3 + len(result.rows)


def test_cli_bench_passes_its_options_and_prints_the_table(monkeypatch, capsys):
    seen = {}

    def fake_run(**kwargs):
        seen.update(kwargs)
        return bench.BenchResult("machine: stub", [bench.Row("step", 1.0)])

    monkeypatch.setattr(bench, "run", fake_run)
    assert main(["bench", "--n", "4096", "--batch", "2", "--repeats", "1", "--no-full-tree", "--no-memory",
                 "--device", "cpu"]) == 0
    assert seen == dict(batch=2, n=4096, device="cpu", path_stride=7, repeats=1, full_tree=False, reference=True,
                        reference_full_tree=False, memory_toy=False)
    assert capsys.readouterr().out.startswith("machine: stub")


class InProcessPool:
    """Stands in for the spawned pool: runs the job in this process."""

    def __init__(self, processes):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def apply(self, fn, args):
        return fn(*args)


@pytest.fixture
def in_process_pool(monkeypatch):
    disabled = logging.root.manager.disable
    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: SimpleNamespace(Pool=InProcessPool))
    yield
    logging.disable(disabled)  # the jobs silence INFO logs, which is harmless only in their own process


@pytest.mark.parametrize("kind", ["mss", "scrapl", "jtfs"])
def test_fresh_peak_runs_each_kind_of_step(in_process_pool, kind):
    # Sizes are checked in fresh processes by the slow test below; here memory freed earlier may be reused.
    assert bench.fresh_peak(kind, 4096, 1, "cpu", idxs=(0, 5)) >= 0


def test_attached_memory_reports_weights_and_pathwise_state(in_process_pool):
    n_weights, peak_mb, state_mb = bench.attached_memory(n=4096, hidden=8, steps=2)
    assert n_weights == 2 * 4096 * 8 + 8 + 1 + 4096  # Linear(n, 8), PReLU, Linear(8, n)
    # m, v and the SAGA memory per visited path (1 or 2 after two steps) plus one running sum, in float32.
    assert state_mb in [(3 * visited + 1) * n_weights * 4 / 2**20 for visited in (1, 2)]
    assert peak_mb >= 0


@pytest.mark.slow
def test_peaks_are_measured_in_fresh_processes():
    assert bench.fresh_peak("jtfs", 4096, 1, "cpu") > 0
    n_weights, peak_mb, state_mb = bench.attached_memory(n=4096, hidden=8, steps=2)
    assert n_weights == 2 * 4096 * 8 + 8 + 1 + 4096  # Linear(n, 8), PReLU, Linear(8, n)
    assert peak_mb > 0 and state_mb > 0
    with pytest.raises(ValueError, match="unknown kind"):
        bench.fresh_peak("nope", 4096, 1, "cpu")


def test_cost_model_counts_ffts_and_times_each_stage():
    from scrapl_graph.bench import cost
    from scrapl_graph.jtfs import JTFS

    jtfs = JTFS(512, J=3, Q1=2, Q2=1, J_fr=1, Q_fr=1)
    stages = cost.path_ffts(jtfs, 0, batch=2)
    assert stages["scalogram"][("r2c", jtfs.n_padded)] >= 2  # the signal's FFT, one per example
    assert all(kind in ("r2c", "c2r", "c2c") for counts in stages.values() for kind, _ in counts)
    rows = cost.path_cost(jtfs, 0, torch.randn(2, 512), repeats=1)
    assert [r[0] for r in rows] == list(cost.STAGES) and all(r[2] > 0 and r[3] > 0 for r in rows)
    assert "scalogram" in cost.cost_table(512, 1, config=dict(J=3, Q1=2, Q2=1, J_fr=1, Q_fr=1), idxs=[0])


def test_scaling_table_reports_growth_per_example_against_the_first_row():
    from scrapl_graph.bench.scaling import ScalingRow, scaling_table

    rows = [ScalingRow(4, 32768, 50.0, 100.0, 1, 2, 65536), ScalingRow(32, 32768, 400.0, 1600.0, 8, 16, 65536),
            ScalingRow(4, 131072, 200.0, 450.0, 4, 8, 262144)]
    lines = scaling_table(rows).splitlines()
    assert "MSS x1.00, SCRAPL x1.00" in lines[1]
    assert "MSS x1.00, SCRAPL x2.00" in lines[2]  # 1600 / 32 against 100 / 4
    assert "SCRAPL x4.50" in lines[3] and "N log N of the padded length: x4.50" in lines[3]


@pytest.mark.slow
def test_scaling_times_each_setting_and_reports_growth_per_example(monkeypatch):
    from scrapl_graph.bench import scaling
    from scrapl_graph.bench.scaling import scaling_rows, scaling_table

    monkeypatch.setattr(scaling, "PAPER_CONFIG", dict(J=5, Q1=2, Q2=1, J_fr=1, Q_fr=1))
    rows = scaling_rows(settings=((1, 4096), (2, 4096), (1, 8192)), path_stride=200, repeats=1, memory=False)
    assert [(r.batch, r.n) for r in rows] == [(1, 4096), (2, 4096), (1, 8192)]
    assert all(r.mss_ms > 0 and r.scrapl_ms > 0 for r in rows)
    assert rows[2].padded == 2 * rows[0].padded  # the JTFS pads to a power of two
    lines = scaling_table(rows).splitlines()
    assert len(lines) == 4 and "MSS x1.00, SCRAPL x1.00" in lines[1] and "N log N" in lines[3]


def test_cli_bench_scaling_prints_the_scaling_table(monkeypatch, capsys):
    from scrapl_graph.bench import scaling

    monkeypatch.setattr(bench, "run", lambda **kwargs: bench.BenchResult("machine: stub", []))
    monkeypatch.setattr(scaling, "scaling_rows", lambda **kwargs: [scaling.ScalingRow(4, 32768, 50.0, 100.0, 1, 2, 65536)])
    assert main(["bench", "--scaling", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "SCRAPL/MSS" in out and "2.00" in out


def test_learnable_overhead_times_both_transforms(monkeypatch):
    from scrapl_graph.bench import learnable

    monkeypatch.setattr(learnable, "PAPER_CONFIG", dict(J=5, Q1=2, Q2=1, J_fr=1, Q_fr=1))
    cost = learnable.learnable_overhead(n=1024, batch=1, path_stride=3, repeats=1)
    assert min(cost.fixed_ms, cost.regeneration_ms, cost.fixed_loss_ms, cost.trained_ms) > 0
    assert cost.regeneration_ratio > 0 and cost.trained_ratio > 0
    assert "fixed filters" in cost.describe()
