"""``audiossl-kmeans``: HuBERT's frame targets, k-means cluster ids written as manifest label files.

    audiossl-kmeans                                          # iteration 1: MFCC, k=100 -> {split}.km
    audiossl-kmeans features=runs/hubert_it1 layer=2 label=km2   # iteration 2: a trained encoder's layer

The logic lives in ``audiossl.features.kmeans``.
"""

from __future__ import annotations

import json
from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import to_config
from audiossl.features.kmeans import KMeansConfig, describe_quality, run


@hydra_app("kmeans")
def main(node: Any) -> None:
    summary = run(to_config(KMeansConfig, node, "kmeans"))
    quality = summary.get("quality")
    if quality:
        print(f"label quality: {describe_quality(quality)}")
    print(json.dumps(summary["settings"]))
    print(f"model: {summary['model']}")


if __name__ == "__main__":
    main()
