"""The resumable trainer shared by pretraining and fine-tuning."""

from audiossl.training.checkpoint import latest_checkpoint, load_checkpoint
from audiossl.training.loop import Trainer, TrainerConfig, TrainingDiverged, Validation
from audiossl.training.optim import OptimConfig

__all__ = [
    "OptimConfig",
    "Trainer",
    "TrainerConfig",
    "TrainingDiverged",
    "Validation",
    "latest_checkpoint",
    "load_checkpoint",
]
