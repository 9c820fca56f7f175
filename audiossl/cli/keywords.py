"""``audiossl-keywords``: build the Speech Commands-style keyword set (logic in ``audiossl.data.synth.keywords``).

    audiossl-keywords                       # data/keywords + manifests/keywords
    audiossl-keywords seed=1 out_dir=data/keywords_s1 manifest_dir=manifests/keywords_s1

The bench's ``keywords`` task reads the manifests (``keywords_manifest_dir``).
"""

from __future__ import annotations

from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import to_config
from audiossl.data.synth.keywords import KeywordsConfig, build_keywords


@hydra_app("keywords")
def main(node: Any) -> None:
    print(build_keywords(to_config(KeywordsConfig, node, "keywords")).table())


if __name__ == "__main__":
    main()
