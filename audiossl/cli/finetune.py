"""``audiossl-finetune``: train a downstream task (asr, phoneme, phone_frames, speaker) on top of an upstream.

    audiossl-finetune task=asr init=runs/pretrain/w2v2_tiny/checkpoints/best.pt run_dir=runs/ft/w2v2
    audiossl-finetune task=asr init=random encoder_from=runs/pretrain/w2v2_tiny run_dir=runs/ft/random
    audiossl-finetune task=phone_frames task.mode=probe init=mfcc run_dir=runs/probe/mfcc

``init`` is a pretraining checkpoint (or run directory) of any objective, a peer's pretrained or fine-tuned
checkpoint (HF directory, fairseq ``.pt``, our torchaudio file, fairseq2 checkpoint: its encoder, with a new
head), or a baseline: ``random`` (the ``encoder`` architecture, or the one of ``encoder_from``, freshly
initialised), ``fbank``, ``mfcc``. The run
is trained by the same ``Trainer`` as pretraining (resume by running the same command again), and
``checkpoints/best.pt`` is chosen by the dev metric (greedy WER / PER / accuracy). Evaluate it with
``audiossl-evaluate checkpoint=<run_dir>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiossl.cli._hydra import hydra_app
from audiossl.config import ConfigError, to_config
from audiossl.data.pipeline import DataConfig
from audiossl.downstream.base import TaskConfig
from audiossl.downstream.finetune import FinetuneConfig, finetune
from audiossl.features.upstream import BASELINES, resolve_checkpoint
from audiossl.models.encoder import EncoderConfig
from audiossl.training.loop import TrainerConfig
from audiossl.training.optim import OptimConfig


@hydra_app("finetune")
def main(node: Any) -> None:
    cfg = FinetuneConfig(
        init=str(node.init),
        encoder_from=node.get("encoder_from"),
        fuse=node.get("fuse"),
        run_dir=str(node.run_dir),
        encoder_lr_scale=float(node.encoder_lr_scale),
        task=to_config(TaskConfig, node.task, "task"),
        encoder=to_config(EncoderConfig, node.encoder, "encoder"),
        data=to_config(DataConfig, node.data, "data"),
        trainer=to_config(TrainerConfig, node.trainer, "trainer"),
        optim=to_config(OptimConfig, node.optim, "optim"),
    ).validate()
    for key in ("init", "encoder_from"):
        value = getattr(cfg, key)
        if value is not None and value not in BASELINES:
            try:  # fail now, naming the key, not after the data is loaded
                resolve_checkpoint(value)
            except FileNotFoundError as error:
                raise ConfigError(f"invalid config at '{key}': {error}") from None
    summary = finetune(cfg)
    if summary is None:  # not rank 0
        return
    metric = summary["select_metric"]
    best = summary["best_metric"]
    shown = f"{best:.4f}" if best is not None else "n/a"
    print(f"done: {summary['step']} updates in {summary['wall_seconds']:.0f} s; best dev {metric} {shown} "
          f"at step {summary['best_step']}; model: {Path(cfg.run_dir) / 'checkpoints' / 'best.pt'}")
    print(f"evaluate: audiossl-evaluate checkpoint={cfg.run_dir}")


if __name__ == "__main__":
    main()
