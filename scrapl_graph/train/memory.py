"""Peak memory of one pass over a long signal: TBPTT in sub-sequences against one direct call.

The measurement runs in a fresh Python process per setting, so that one
setting's allocations cannot hide another's peak. In that process:

1. the graph (tremolo -> phaser, 22.05 kHz) and the signal buffers (input and
   target, ``seconds`` of audio each) are allocated;
2. the kernel's peak-RSS counter is reset (``echo 5 > /proc/self/clear_refs``)
   and the resident size read (``VmRSS``): the baseline, which holds the
   signal buffers;
3. one pass runs: either every sub-sequence of TBPTT, forward and backward
   (:func:`~scrapl_graph.train.tbptt.tbptt_memory_pass`), or one forward and
   backward through the whole signal;
4. the peak (``VmHWM``) minus the baseline is reported: the memory the pass
   needs beyond the signal itself.

Linux only (``/proc``). Command line::

    python -m scrapl_graph.train.memory --seconds 60 --mode tbptt
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict

import torch

SAMPLE_RATE = 22050


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _graph():
    from ..graph import GraphSynth
    from ..processors import Phaser, Tremolo

    return GraphSynth.chain({"tremolo": Tremolo(SAMPLE_RATE), "phaser": Phaser(SAMPLE_RATE)}, num_samples=1024)


def measure_in_process(seconds: float, mode: str, sub_length: int = 32768, num_sub: int = 4,
                       loss: str = "mss") -> Dict[str, float]:
    """Run one pass in this process and return ``{"peak_mib", "baseline_mib", "elapsed_s", ...}``.

    Args:
        seconds: signal length.
        mode: ``"tbptt"`` (sub-sequences of ``sub_length``, groups of ``num_sub``) or ``"direct"``.
        loss: registry loss of the pass.

    Raises:
        ValueError: for an unknown mode.
    """
    from .run import as_loss
    from .tbptt import tbptt_memory_pass

    if mode not in ("tbptt", "direct"):
        raise ValueError(f"mode must be 'tbptt' or 'direct', got {mode!r}")
    torch.set_num_threads(1)  # the same thread pools, hence allocator arenas, in every run
    synth, loss_fn = _graph(), as_loss(loss)
    length = int(seconds * SAMPLE_RATE)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, length, generator=g)
    y = torch.randn(1, 1, length, generator=g)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident size to the current one
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    if mode == "tbptt":
        tbptt_memory_pass(synth, x, y, loss_fn, sub_length=sub_length, num_sub=num_sub)
    else:
        theta = torch.zeros(1, synth.n_theta, requires_grad=True)
        loss_fn(synth.render(theta, x), y).backward()
    elapsed = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    return {"seconds": seconds, "mode": mode, "peak_mib": (peak - baseline) / 1024, "baseline_mib": baseline / 1024,
            "signal_mib": 2 * length * 4 / 2 ** 20, "elapsed_s": elapsed}


def measure_peak_memory(seconds: float, mode: str = "tbptt", **kwargs) -> Dict[str, float]:
    """:func:`measure_in_process` in a fresh Python process (see the module docstring).

    Raises:
        RuntimeError: if the child process fails.
    """
    args = [sys.executable, "-m", "scrapl_graph.train.memory", "--seconds", str(seconds), "--mode", mode]
    for key, value in kwargs.items():
        args += [f"--{key}", str(value)]
    # Tensors above 64 KiB are mmap-ed by glibc and returned to the system when
    # freed; with the default (dynamic) threshold the heap keeps growing over
    # hundreds of sub-sequences (58 -> 68 MiB from 10 s to 300 s), which would
    # measure the allocator rather than the pass.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--mode", default="tbptt", choices=["tbptt", "direct"])
    parser.add_argument("--sub_length", type=int, default=32768)
    parser.add_argument("--num_sub", type=int, default=4)
    parser.add_argument("--loss", default="mss")
    a = parser.parse_args(argv)
    print(json.dumps(measure_in_process(a.seconds, a.mode, a.sub_length, a.num_sub, a.loss)))


if __name__ == "__main__":
    main()
