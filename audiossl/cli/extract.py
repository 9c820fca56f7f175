"""``audiossl-extract``: per-layer features of a manifest split, written to disk and resumable.

    audiossl-extract upstream=runs/pretrain/w2v2_tiny split=dev_clean layers=[0,-1] out_dir=features/w2v2
    audiossl-extract upstream=hf/wav2vec2-base split=train_10min format=memmap     # an imported checkpoint
    audiossl-extract upstream=mfcc split=dev_clean                                # a classic front-end

``upstream`` is anything ``audiossl-finetune init=`` takes except ``random``: an audiossl pretraining or
fine-tuning checkpoint (or run directory) of any objective, a peer checkpoint (HF directory, fairseq
``.pt``, our torchaudio file, fairseq2 checkpoint), ``fbank`` or ``mfcc``. Running the command again skips
the utterances already on disk. The logic and the on-disk layouts are in ``audiossl.features.store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from audiossl.cli._hydra import hydra_app
from audiossl.config import ConfigError, check_choice, to_config
from audiossl.data.manifest import ManifestError
from audiossl.data.pipeline import DataConfig
from audiossl.features.store import DTYPES, FORMATS, extract_to_disk
from audiossl.features.upstream import build_upstream
from audiossl.models.interop import InteropError


@dataclass
class ExtractConfig:
    """``conf/extract.yaml``. ``layers``: hidden-state indices (0 = projected conv features, -1 = last),
    null for all. ``data`` says where the manifests are and how audio is read and batched."""

    upstream: str = "mfcc"
    split: str = "dev_clean"
    out_dir: str = "features"
    layers: list[int] | None = None
    format: str = "npy"
    dtype: str = "float16"
    cmvn: bool = True
    device: str = "cpu"
    num_threads: int = 1
    data: DataConfig = field(default_factory=lambda: DataConfig(crop=False, min_sample_size=0))

    def validate(self) -> ExtractConfig:
        check_choice(self.format, FORMATS, "format")
        check_choice(self.dtype, tuple(DTYPES), "dtype")
        if self.upstream == "random":
            raise ConfigError("invalid config at 'upstream': random weights make no features worth storing; "
                              "name a checkpoint, fbank or mfcc")
        return self


@hydra_app("extract")
def main(node: Any) -> None:
    cfg = to_config(ExtractConfig, node, "extract")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        upstream = build_upstream(cfg.upstream, cmvn=cfg.cmvn).to(cfg.device)
    except (FileNotFoundError, InteropError) as error:
        raise ConfigError(f"invalid config at 'upstream': {error}") from None
    try:
        summary = extract_to_disk(upstream, cfg.data, cfg.split, cfg.out_dir, cfg.layers, cfg.format, cfg.dtype,
                                  cfg.device)
    except ManifestError as error:
        raise ConfigError(f"invalid config at 'split': {error}") from None
    print(f"{summary.written} utterances written, {summary.already_done} already done, {summary.skipped} skipped "
          f"-> {summary.out_dir}")
    if summary.written:
        print(f"{summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s "
              f"({summary.real_time_speed:.0f}x real time)")
    if summary.faults:
        print(summary.faults)


if __name__ == "__main__":
    main()
