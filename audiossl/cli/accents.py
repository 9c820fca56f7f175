"""``audiossl-accents``: build the accent-ID set (logic in ``audiossl.data.synth.accents``).

    audiossl-accents                        # data/accents + manifests/accents
    audiossl-accents seed=1 out_dir=data/accents_s1 manifest_dir=manifests/accents_s1

The bench's ``accent`` task reads the manifests (``accent_manifest_dir``).
"""

from __future__ import annotations

from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import to_config
from audiossl.data.synth.accents import AccentsConfig, build_accents


@hydra_app("accents")
def main(node: Any) -> None:
    print(build_accents(to_config(AccentsConfig, node, "accent_set")).table())


if __name__ == "__main__":
    main()
