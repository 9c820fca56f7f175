"""``audiossl-synth``: build the embedded synthetic corpus (logic lives in ``audiossl.data.synth``)."""

from __future__ import annotations

from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import to_config
from audiossl.data.synth import SynthConfig, build_corpus


@hydra_app("synth")
def main(cfg: Any) -> None:
    config = to_config(SynthConfig, cfg, "synth")
    print(build_corpus(config).table())


if __name__ == "__main__":
    main()
