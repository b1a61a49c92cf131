"""``scrapl-graph fit|validate|test --config FILE``: the training layer through LightningCLI.

A config names the model (:class:`SoundMatching`: loss, encoder,
optimizer settings), the data module (``class_path``/``init_args``), the
trainer and callbacks (e.g. :class:`ThetaISWarmup`); every key can be
overridden on the command line (``--model.loss scrapl``,
``--data.init_args.batch_size 8``, ``--trainer.max_epochs 3``,
``--trainer.devices 2``). The model's synth is the data module's
(``data.synth`` is linked into ``model.synth``), so that the decoder and
the data share one parameter layout.
"""
from __future__ import annotations

from typing import List, Optional

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from .module import SoundMatching


class SoundMatchingCLI(LightningCLI):
    """LightningCLI with the data module's synth linked into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.synth", "model.synth", apply_on="instantiate")


def run(args: Optional[List[str]] = None) -> int:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``) with ``args``."""
    SoundMatchingCLI(SoundMatching, pl.LightningDataModule, subclass_mode_data=True, args=args,
                     seed_everything_default=0, save_config_kwargs={"overwrite": True})
    return 0
