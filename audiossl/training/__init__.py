"""The resumable trainer shared by pretraining and fine-tuning."""

from audiossl.training.checkpoint import latest_checkpoint, load_checkpoint, load_pretrained_encoder
from audiossl.training.loop import Trainer, TrainerConfig, TrainingDiverged
from audiossl.training.optim import OptimConfig

__all__ = [
    "OptimConfig",
    "Trainer",
    "TrainerConfig",
    "TrainingDiverged",
    "latest_checkpoint",
    "load_checkpoint",
    "load_pretrained_encoder",
]
