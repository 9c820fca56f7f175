"""Fine-tuned models on disk: build a task from its config, and read one back from its checkpoint alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audiossl.asr.vocab import Vocabulary, read_dict_file
from audiossl.config import to_config
from audiossl.data.pipeline import DataConfig
from audiossl.data.manifest import parse_alignment
from audiossl.downstream.base import CTC_TASKS, LABEL_KIND, DownstreamTask, TaskConfig, class_names
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.frame_phones import FramePhoneTask
from audiossl.downstream.speaker import SpeakerTask
from audiossl.features.upstream import Upstream, UpstreamSpec, rebuild_upstream, resolve_checkpoint
from audiossl.training.checkpoint import load_checkpoint


@dataclass
class TaskOutputs:
    """What defines a task's output layer, saved with the run so evaluation rebuilds the identical head.

    ``symbols``: CTC vocabulary without blank, frame phone classes, or speaker names, in output order.
    """

    symbols: list[str]


SAVED_KEY = "downstream"
"""Where a fine-tuning checkpoint's config keeps its ``SavedTask``; pretraining checkpoints have none."""


@dataclass
class SavedTask:
    """A fine-tuning checkpoint's ``config.downstream``: what rebuilds its model without any other file.

    ``upstream`` says how to rebuild the upstream (weights come from the checkpoint), ``outputs`` the head's
    classes, ``data`` the data config it was trained with (evaluation reads test splits the same way).
    Peer CTC models imported for evaluation carry one too, so every reader treats both alike.
    """

    upstream: UpstreamSpec
    outputs: TaskOutputs
    data: DataConfig

    def to_dict(self) -> dict[str, Any]:
        return {"upstream": asdict(self.upstream), "outputs": asdict(self.outputs), "data": asdict(self.data)}

    @classmethod
    def of(cls, config: dict[str, Any], where: str | Path) -> SavedTask:
        saved = config.get(SAVED_KEY) if is_finetuned(config) else None
        if saved is None:
            raise ValueError(f"{where} is not a fine-tuning checkpoint (no config.{SAVED_KEY}); "
                             "pretraining checkpoints are evaluated after audiossl-finetune")
        return cls(UpstreamSpec(**saved["upstream"]), TaskOutputs(**saved["outputs"]),
                   to_config(DataConfig, saved["data"], f"{SAVED_KEY}.data"))


def is_finetuned(config: dict[str, Any] | None) -> bool:
    return bool(config) and SAVED_KEY in config


def build_task(cfg: TaskConfig, upstream: Upstream, outputs: TaskOutputs) -> DownstreamTask:
    if cfg.name in CTC_TASKS:
        return CTCTask(cfg, upstream, Vocabulary.from_symbols(outputs.symbols))
    if cfg.name == "phone_frames":
        return FramePhoneTask(cfg, upstream, outputs.symbols)
    return SpeakerTask(cfg, upstream, outputs.symbols)


def task_outputs(task_name: str, manifest_dir: Path, train_labels: list[str]) -> TaskOutputs:
    """Output classes: the manifest dictionary for CTC; for the probes, every class of the training labels.

    Frame classes come from the training alignments themselves (silence included, whatever it is called),
    so no frame of a training utterance is left without a class.
    """
    if task_name in CTC_TASKS:
        return TaskOutputs(read_dict_file(manifest_dir / f"dict.{LABEL_KIND[task_name]}.txt"))
    if task_name == "phone_frames":
        return TaskOutputs(class_names(seg[0] for line in train_labels for seg in parse_alignment(line, "train")))
    return TaskOutputs(class_names(train_labels))


def load_finetuned(path: str | Path) -> tuple[DownstreamTask, dict[str, Any], Path]:
    """Rebuild a fine-tuned task from its checkpoint (or run directory: ``best.pt`` first) alone.

    Returns the task in eval mode, the run config saved with it, and the checkpoint file used.
    """
    checkpoint_path = resolve_checkpoint(path)
    task, config = finetuned_from(load_checkpoint(checkpoint_path), checkpoint_path)
    return task, config, checkpoint_path


def finetuned_from(checkpoint: dict[str, Any], where: str | Path) -> tuple[DownstreamTask, dict[str, Any]]:
    """``load_finetuned`` for a checkpoint already read (``where`` names it in errors): task and run config."""
    config = checkpoint.get("config") or {}
    saved = SavedTask.of(config, where)
    upstream = rebuild_upstream(saved.upstream)
    task = build_task(to_config(TaskConfig, config["task"], "task"), upstream, saved.outputs)
    task.load_state_dict(checkpoint["model"])
    return task.eval(), config
