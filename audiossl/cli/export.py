"""``audiossl-export``: a checkpoint as a HuggingFace directory or a torchaudio ``wav2vec2_model`` file.

    audiossl-export checkpoint=runs/asr_10min out=exported/asr_hf                 # Wav2Vec2ForCTC + vocab.json
    audiossl-export checkpoint=runs/pretrain/w2v2_tiny format=torchaudio out=w2v2_tiny_torchaudio.pt
    audiossl-export checkpoint=wav2vec_small_960h.pt dict_path=dict.ltr.txt out=hf/wav2vec_small_960h

A fine-tuned CTC model (linear head on the last layer) goes out with its head and vocabulary, anything else
as the bare encoder (``Wav2Vec2Model``). Only Transformer encoders over the wav2vec 2.0-style conv stack can
be exported. Peer checkpoints convert too. The logic is in ``audiossl.downstream.peer_ctc.export_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import ConfigError, check_choice, to_config
from audiossl.downstream.peer_ctc import EXPORT_FORMATS, export_model
from audiossl.models.interop import InteropError


@dataclass
class ExportConfig:
    """``conf/export.yaml``: ``out`` is a directory for ``hf``, a ``.pt`` file for ``torchaudio``."""

    checkpoint: str | None = None
    format: str = "hf"
    out: str | None = None
    dict_path: str | None = None

    def validate(self) -> ExportConfig:
        check_choice(self.format, EXPORT_FORMATS, "format")
        for key in ("checkpoint", "out"):
            if not getattr(self, key):
                raise ConfigError(f"invalid config at '{key}': required")
        return self


@hydra_app("export")
def main(node: Any) -> None:
    cfg = to_config(ExportConfig, node, "export")
    try:
        written = export_model(cfg.checkpoint, cfg.out, cfg.format, cfg.dict_path)
    except (FileNotFoundError, InteropError) as error:
        raise ConfigError(f"invalid config at 'checkpoint': {error}") from None
    print(f"exported {cfg.checkpoint} as {cfg.format}: {written}")


if __name__ == "__main__":
    main()
