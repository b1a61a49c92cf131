"""Memory of a TBPTT pass follows the sub-sequence length, not the signal (slow: minutes)."""
import pytest

from scrapl_graph.train.memory import measure_peak_memory


@pytest.mark.slow
def test_tbptt_peak_memory_is_flat_in_signal_length():
    peaks = [measure_peak_memory(s, "tbptt")["peak_mib"] for s in (10, 60, 300)]
    direct = measure_peak_memory(60, "direct")["peak_mib"]
    assert max(peaks) <= 1.10 * min(peaks), peaks  # flat within 10 %
    assert direct > 5 * max(peaks)


@pytest.mark.slow
def test_memory_pass_in_a_subprocess_small():
    m = measure_peak_memory(1.5, "tbptt", sub_length=8192, num_sub=2)
    assert m["peak_mib"] > 0 and m["elapsed_s"] > 0
