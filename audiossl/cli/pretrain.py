"""``audiossl-pretrain``: self-supervised pretraining of a raw-waveform encoder (logic lives in ``training``).

    audiossl-pretrain +experiment=cpc_tiny                       # tiny CPU presets: cpc / wav2vec2 / apc / cola
    audiossl-pretrain objective=wav2vec2 encoder=w2v2_base data=librispeech optim=w2v2_pretrain
    torchrun --nproc_per_node=8 -m audiossl.cli.pretrain objective=wav2vec2 ...   # DDP, one process per GPU

Every key is overridable (``optim.lr=1e-3 trainer.max_steps=500 objective.num_negatives=50``). The whole
config, the objective's own keys included, is validated before anything is built, so a typo fails in a
second naming the key. Running the same command again with the same ``run_dir`` resumes from
``run_dir/checkpoints/latest``; ``run_dir/config.yaml`` holds the resolved config.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from audiossl.cli._hydra import hydra_app
from audiossl.config import ConfigError, to_config
from audiossl.data.pipeline import AudioPipeline, DataConfig
from audiossl.features.kmeans import describe_quality, quality_path
from audiossl.models.encoder import EncoderConfig, build_encoder
from audiossl.objectives.base import ObjectiveSpec, objective_names, objective_spec
from audiossl.training.checkpoint import seed_everything
from audiossl.training.distributed import DistContext, init_distributed, shutdown
from audiossl.training.loop import Trainer, TrainerConfig, TrainingDiverged, Validation
from audiossl.training.optim import OptimConfig

TOP_LEVEL_KEYS = ("run_dir", "objective", "encoder", "data", "optim", "trainer")


@dataclass
class PretrainSetup:
    """The validated config: one typed dataclass per group, the objective's from its registry entry."""

    run_dir: str
    spec: ObjectiveSpec
    objective: Any
    encoder: EncoderConfig
    data: DataConfig
    optim: OptimConfig
    trainer: TrainerConfig

    def resolved(self) -> dict[str, Any]:
        """Every key with its final value (defaults included): ``config.yaml`` and the checkpoints keep it."""
        groups = {name: asdict(getattr(self, name)) for name in TOP_LEVEL_KEYS[1:]}
        return {"run_dir": self.run_dir, **groups}


def validate(cfg: DictConfig) -> PretrainSetup:
    """Check every group against its dataclass; raises ``ConfigError`` naming the first bad key."""
    node = _plain(cfg)
    unknown = sorted(set(node) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"invalid config at '{unknown[0]}': unknown key; pretraining takes {list(TOP_LEVEL_KEYS)}")
    spec, objective = validate_objective(node.get("objective"))
    run_dir = node.get("run_dir")
    if not isinstance(run_dir, str) or not run_dir:
        raise ConfigError(f"invalid config at 'run_dir': need a directory path, got {run_dir!r}")
    return PretrainSetup(
        run_dir=run_dir,
        spec=spec,
        objective=objective,
        encoder=to_config(EncoderConfig, node.get("encoder"), "encoder"),
        data=to_config(DataConfig, node.get("data"), "data"),
        optim=to_config(OptimConfig, node.get("optim"), "optim"),
        trainer=to_config(TrainerConfig, node.get("trainer"), "trainer"),
    )


def validate_objective(node: Any) -> tuple[ObjectiveSpec, Any]:
    """``objective.name`` picks the registered objective, whose own config class checks the other keys."""
    name = (node or {}).get("name")
    if name not in objective_names():
        raise ConfigError(f"invalid config at 'objective.name': {name!r} is not one of {objective_names()}")
    spec = objective_spec(name)
    field_names = {f.name for f in dataclasses.fields(spec.config_cls)}
    values = node if "name" in field_names else {k: v for k, v in node.items() if k != "name"}
    return spec, to_config(spec.config_cls, values, "objective")


def _plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers without hydra's own node; a broken ``${...}`` is a config error."""
    try:
        node = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid config at '{getattr(error, 'full_key', '')}': {error}") from None
    node.pop("hydra", None)
    return node


def open_data(setup: PretrainSetup, ctx: DistContext) -> tuple[AudioPipeline, AudioPipeline | None]:
    """This rank's training shard and, when the manifest exists, the validation split.

    A missing or malformed manifest is reported as a config error (the message names the file) before
    any model is built.
    """
    data = setup.data
    try:
        train = AudioPipeline(data, data.train_split, ctx.rank, ctx.world_size, train=True)
        if not (Path(data.manifest_dir) / f"{data.valid_split}.tsv").is_file():
            if ctx.is_main:
                print(f"note: no {data.valid_split}.tsv in {data.manifest_dir}: training without validation")
            return train, None
        return train, AudioPipeline(data, data.valid_split, ctx.rank, ctx.world_size, train=False)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"invalid config at 'data': {error}") from None


def report(summary: dict[str, Any], train: AudioPipeline) -> None:
    train_record, valid = summary["train"], summary["valid"]
    print(f"done: {summary['step']} updates ({summary['nonfinite_steps']} skipped as non-finite)")
    if train_record:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(train_record["metrics"].items()))
        print(f"last train log: loss={train_record['loss']:.4g}, {metrics}")
    if valid:
        print("last validation: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(valid.items())))
    if summary["best_step"] is not None:
        print(f"best {summary['select_metric']}={summary['best_metric']:.4g} at step {summary['best_step']}")
    print(f"checkpoint: {summary['last_checkpoint']}")
    faults = train.fault_report()
    if faults.total:
        print(f"skipped audio files:\n{faults.table()}")


def keep_label_quality(setup: PretrainSetup) -> None:
    """Copy the cluster quality of learned targets (HuBERT's k-means labels) into the run and print it: which
    labels a run learned, and how phone-like they were, must survive a relabelled manifest directory."""
    for kind in setup.data.labels:
        source = quality_path(setup.data.manifest_dir, kind)
        if source.is_file():
            Path(setup.run_dir).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, Path(setup.run_dir) / source.name)
            quality = json.loads(source.read_text()).get("quality")
            if quality:
                print(f"targets '{kind}': {describe_quality(quality)}")


def pretrain(setup: PretrainSetup) -> dict[str, Any] | None:
    """Build data, encoder and objective, then train (or resume); the summary on rank 0, None elsewhere."""
    ctx = init_distributed(setup.trainer.device)
    train, valid = open_data(setup, ctx)
    if ctx.is_main:
        keep_label_quality(setup)
    seed_everything(setup.trainer.seed)  # same initial weights on every rank and on every restart
    objective = setup.spec.build(setup.objective, build_encoder(setup.encoder))
    trainer = Trainer(objective, train, setup.trainer, setup.optim, setup.run_dir, Validation(data=valid),
                      config_to_save=setup.resolved())
    try:
        summary = trainer.fit()
    finally:
        shutdown(ctx)
    if ctx.is_main:
        report(summary, train)
        return summary
    return None


@hydra_app("pretrain")
def main(cfg: DictConfig) -> None:
    setup = validate(cfg)
    try:
        pretrain(setup)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
