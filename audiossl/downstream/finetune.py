"""Fine-tuning a downstream task on top of an upstream: data, upstream, task and the Trainer, wired once.

``audiossl-finetune`` is the command-line face of ``finetune(FinetuneConfig)``; ``audiossl-evaluate`` reads
what it saves (``finetuned.py``). The run is trained by the same ``Trainer`` as pretraining (resume by running
the same command again), and ``checkpoints/best.pt`` is chosen by the dev metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from audiossl.config import ConfigError, check_positive
from audiossl.data.manifest import Manifest, label_path, write_manifest
from audiossl.data.pipeline import AudioPipeline, DataConfig
from audiossl.downstream.base import LABEL_KIND, DEV_METRICS, DownstreamTask, TaskConfig
from audiossl.downstream.finetuned import SAVED_KEY, SavedTask, TaskOutputs, build_task, task_outputs
from audiossl.downstream.predict import predict_all, score
from audiossl.downstream.speaker import speaker_holdout
from audiossl.features.upstream import FRONT_ENDS, Upstream, build_upstream, random_upstream
from audiossl.models.encoder import EncoderConfig
from audiossl.training.checkpoint import seed_everything
from audiossl.training.distributed import DistContext, barrier, gather_objects, init_distributed, shutdown
from audiossl.training.loop import Trainer, TrainerConfig, Validation
from audiossl.training.optim import OptimConfig

SPEAKER_SPLITS = ("speaker_train", "speaker_dev", "speaker_test")
"""Manifests a speaker-ID run writes into ``run_dir/manifests`` (held-out utterances of training speakers)."""
OPTIONAL_LABELS = ("wrd", "spk")
"""Loaded when present: ``wrd`` is the ASR scoring reference, ``spk`` drives per-speaker breakdowns."""


@dataclass
class FinetuneConfig:
    """``conf/finetune.yaml``. ``encoder`` is only used for ``init=random`` without ``encoder_from``.

    ``encoder_lr_scale`` multiplies ``optim.lr`` for the context network (``task.mode=finetune``), so a
    freshly initialised head can learn faster than the pretrained layers under it. ``fuse`` (``fbank`` or
    ``mfcc``) appends that front-end's frames to every layer of an encoder upstream (``UpstreamSpec.fuse``).
    """

    init: str = "random"
    encoder_from: str | None = None
    fuse: str | None = None
    run_dir: str = "runs/finetune"
    encoder_lr_scale: float = 1.0
    task: TaskConfig = field(default_factory=TaskConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> FinetuneConfig:
        self.task.validate()
        check_positive(self.encoder_lr_scale, "encoder_lr_scale")
        if self.data.crop:
            raise ConfigError("invalid config at 'data.crop': fine-tuning needs whole utterances (crop=false)")
        if self.init in FRONT_ENDS and self.task.mode == "finetune":
            raise ConfigError(f"invalid config at 'task.mode': init={self.init} has nothing to fine-tune; "
                              "use task.mode=probe or weighted")
        if self.fuse is not None and self.fuse not in FRONT_ENDS:
            raise ConfigError(f"invalid config at 'fuse': {self.fuse!r}; choose one of {list(FRONT_ENDS)} or null")
        if self.fuse and self.init in FRONT_ENDS:
            raise ConfigError(f"invalid config at 'fuse': init={self.init} is a front-end already; fuse=null")
        return self


def make_upstream(cfg: FinetuneConfig) -> Upstream:
    """The upstream ``init`` names; ``random`` draws ``encoder_from``'s architecture (else ``encoder``) from
    ``trainer.seed``.

    Front-ends normalise each utterance (CMVN) except for speaker ID, where it would erase the speaker.
    """
    random = cfg.init == "random"
    try:
        if random:
            return random_upstream(cfg.encoder_from or cfg.encoder, cfg.trainer.seed, cfg.fuse)
        return build_upstream(cfg.init, cmvn=cfg.task.name != "speaker", fuse=cfg.fuse)
    except ValueError as error:  # a checkpoint we cannot rebuild (a peer setting we cannot represent, ...)
        raise ConfigError(f"invalid config at '{'encoder_from' if random else 'init'}': {error}") from None


def label_kinds(task_name: str, manifest_dir: Path, splits: list[str]) -> list[str]:
    """The task's label kind plus the optional kinds present for every split."""
    kinds = [LABEL_KIND[task_name]]
    for kind in OPTIONAL_LABELS:
        if kind not in kinds and all(label_path(manifest_dir / f"{s}.tsv", kind).is_file() for s in splits):
            kinds.append(kind)
    return kinds


def write_speaker_splits(data: DataConfig, fraction: float, out_dir: Path) -> None:
    """Held-out utterances of the training speakers, as manifests in ``out_dir`` (see ``speaker_holdout``)."""
    source = Path(data.manifest_dir) / f"{data.train_split}.tsv"
    kinds = label_kinds("speaker", Path(data.manifest_dir), [data.train_split])
    manifest = Manifest.load(source, labels=kinds)
    parts = speaker_holdout([row.relpath for row in manifest.rows], manifest.labels["spk"], fraction)
    for split, rows in zip(SPEAKER_SPLITS, parts):
        if not rows:
            raise ConfigError(f"invalid config at 'data.train_split': {source} has too few utterances per speaker "
                              f"for a {split} part (k = 1/task.holdout_fraction per speaker are needed); "
                              "use a larger split, e.g. data.train_split=train_clean")
        labels = {kind: [manifest.labels[kind][r] for r in rows] for kind in kinds}
        write_manifest(out_dir, split, manifest.root, [manifest.rows[r] for r in rows], labels)


def speaker_data(data: DataConfig, out_dir: Path) -> DataConfig:
    """The data config that trains and validates on the held-out speaker manifests in ``out_dir``."""
    return replace(data, manifest_dir=str(out_dir), train_split=SPEAKER_SPLITS[0], valid_split=SPEAKER_SPLITS[1])


def dev_evaluator(task_name: str, data: DataConfig, ctx: DistContext) -> Any:
    """The Trainer's ``evaluate`` hook: greedy decoding of the dev split, scored by ``metrics.py``.

    Under torchrun each rank decodes its shard of the dev split and the predictions are gathered, so
    every rank scores the whole split (and gets the same number) for the cost of its share.
    """
    pipeline = AudioPipeline(data, data.valid_split, ctx.rank, ctx.world_size, train=False)
    keys = DEV_METRICS[task_name]

    def evaluate(task: DownstreamTask) -> dict[str, float]:
        device = next(task.parameters()).device
        shard = next(iter(predict_all(task, pipeline, device=device).values()), [])
        predictions = [p for rank_predictions in gather_objects(shard, ctx) for p in rank_predictions]
        result = {key: float(value) for key, value in score(task_name, predictions).items()}
        if task_name == "asr":
            result["wer_then_cer"] = result["wer"] + result["cer"] / 1000
        return {key: result[key] for key in keys}

    return evaluate


def saved_config(cfg: FinetuneConfig, upstream: Upstream, outputs: TaskOutputs, data: DataConfig) -> dict[str, Any]:
    """What the checkpoint must carry to rebuild the model for evaluation without any other file.

    ``encoder`` sits at the top level (the pretraining convention) so ``load_encoder`` can
    take a fine-tuned checkpoint as the start of another run.
    """
    config = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    config[SAVED_KEY] = SavedTask(upstream.spec, outputs, data).to_dict()
    config["encoder"] = upstream.spec.encoder or None
    return config


def finetune(cfg: FinetuneConfig) -> dict[str, Any] | None:
    """Build upstream, task and data from ``cfg`` and train; the Trainer's summary on rank 0, None elsewhere.

    Under torchrun every rank trains on its shard of the training split (DDP averages the gradients).
    """
    ctx = init_distributed(cfg.trainer.device)
    run_dir = Path(cfg.run_dir)
    data = cfg.data
    if cfg.task.name == "speaker":
        if ctx.is_main:
            write_speaker_splits(data, cfg.task.holdout_fraction, run_dir / "manifests")
        barrier(ctx)
        data = speaker_data(data, run_dir / "manifests")
    kinds = label_kinds(cfg.task.name, Path(data.manifest_dir), [data.train_split, data.valid_split])
    data = replace(data, labels=kinds)
    train = AudioPipeline(data, data.train_split, ctx.rank, ctx.world_size, train=True)
    seed_everything(cfg.trainer.seed)  # the head's init and a random upstream's weights follow trainer.seed
    upstream = make_upstream(cfg)
    outputs = task_outputs(cfg.task.name, Path(data.manifest_dir), train.manifest.labels[kinds[0]])
    task = build_task(cfg.task, upstream, outputs)
    metric, higher = cfg.task.selection()
    trainer = Trainer(
        task, train, cfg.trainer, cfg.optim, run_dir,
        Validation(evaluate=dev_evaluator(cfg.task.name, data.for_evaluation(kinds), ctx), select_metric=metric,
                   higher_is_better=higher),
        param_groups=task.parameter_groups(cfg.optim.lr, cfg.encoder_lr_scale, cfg.optim.weight_decay),
        config_to_save=saved_config(cfg, upstream, outputs, data),
    )
    try:
        summary = trainer.fit()
    finally:
        shutdown(ctx)
    return summary if ctx.is_main else None


