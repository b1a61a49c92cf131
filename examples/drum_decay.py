"""The drum decay experiment: SCRAPL, its remedies for drum decays, MSS and the full JTFS on DrumSynth targets.

Eight targets (two per preset: kick, snare, tom, hi-hat) whose decays and
levels moved away from their preset are matched from the preset, aligned
and with random time shifts of up to 46 ms ("meso"), with three seeds (each
draws its own targets). See :mod:`scrapl_graph.experiments.drum_decay` for
the losses and the metrics; results go to ``scrapl_drums/results.{csv,md}``.

Run:  python examples/drum_decay.py                 (about 45 minutes on 2 CPU cores)
      python examples/drum_decay.py --steps 3 --seeds 0 --jtfs-seeds 0 --targets-per-preset 1 \\
          --num-samples 4096 --J 9 --no-diagnose    (smoke test)
Same as: scrapl-graph drums [options]
"""
import sys
from pathlib import Path

try:
    import scrapl_graph  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scrapl_graph.experiments.drum_decay import main

if __name__ == "__main__":
    sys.exit(main())
