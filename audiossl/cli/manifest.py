"""``audiossl-manifest``: write fairseq manifests for a LibriSpeech-layout corpus (logic lives in ``data``)."""

from __future__ import annotations

import sys
from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import to_config
from audiossl.data.lexicon import LexiconError
from audiossl.data.librispeech import ManifestConfig, build_manifests, summary_table
from audiossl.data.manifest import ManifestError


@hydra_app("manifest")
def main(cfg: Any) -> None:
    config = to_config(ManifestConfig, cfg, "manifest")
    try:
        summaries = build_manifests(config)
    except (ManifestError, LexiconError) as error:  # bad corpus files: the message names the file/line to fix
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(summary_table(summaries))
    print(f"manifests written to {config.out_dir}")


if __name__ == "__main__":
    main()
