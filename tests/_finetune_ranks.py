"""Run ``audiossl-finetune`` (argv) and save each rank's final weights as ``<run_dir>/rank<r>.pt``.

Launched by ``tests/test_distributed.py`` under torchrun: rank 0 alone writes the run directory, so the
other ranks' weights are only visible through this wrapper around ``Trainer.fit``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from audiossl.training.loop import Trainer


def main() -> None:
    run_dir = Path(next(arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("run_dir=")))
    original = Trainer.fit

    def fit_and_save(self: Trainer):
        summary = original(self)
        torch.save(self.objective.state_dict(), run_dir / f"rank{os.environ.get('RANK', '0')}.pt")
        return summary

    Trainer.fit = fit_and_save
    from audiossl.cli.finetune import main as finetune

    finetune()


if __name__ == "__main__":
    main()
