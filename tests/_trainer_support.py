"""A tiny real objective, real tiny audio and a runnable script shared by the trainer tests.

Kept apart from the real objectives so the Trainer is tested on its own contract: a small wav2vec-shaped
``Encoder`` (input dropout on, so resumes must restore the RNG) under a CPC-style InfoNCE loss over the frames
of each utterance. Run as a script (``python tests/_trainer_support.py RUN_DIR CLIPS_DIR ...``) it trains
on an ``AudioPipeline`` over those clips: the resume (SIGKILL) and torchrun tests launch it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.config import to_config
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import EncoderConfig, build_encoder
from audiossl.objectives.base import Objective, ObjectiveOutput

SAMPLE_RATE = 16_000


def tiny_encoder_config() -> dict:
    """40x downsampling (2.5 ms frames), input dropout, one GRU layer of 32: trains in milliseconds.

    An RNN context keeps fairseq2's model modules (seconds to import) out of the test subprocesses.
    """
    return {
        "name": "trainer_test_tiny",
        "conv_layers": [[16, 10, 5], [16, 8, 4], [16, 4, 2]],
        "conv_norm": "layer_norm",
        "conv_bias": True,
        "conv_activation": "relu",
        "feature_grad_scale": 1.0,
        "model_dim": 32,
        "feature_dropout": 0.1,
        "context": "gru",
        "num_layers": 1,
        "dropout": 0.0,
        "causal": True,
    }


@dataclass
class TinyContrastiveConfig:
    offset: int = 4


class TinyContrastive(Objective):
    """Predict the latent ``offset`` frames ahead among all frames of the utterance (InfoNCE, accuracy).

    Forward call number ``n`` (1-based) returns a NaN loss when ``n in poison_calls`` (``-1``: every call),
    a real NaN through the graph so gradients are NaN too;
    ``delay`` slows each forward so a test can kill a run mid-way.
    """

    def __init__(self, config: TinyContrastiveConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config, self.encoder = config, encoder
        self.predictor = nn.Linear(encoder.output_dim, encoder.feature_encoder.output_dim)
        self.poison_calls: set[int] = set()
        self.calls = 0
        self.delay = 0.0
        self.warning_text = ""
        self.updates_seen: list[int] = []

    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        output = self.encoder(batch.waveforms, batch.lengths)
        k = self.config.offset
        predictions = self.predictor(output.features[:, :-k])  # (B, F-k, C)
        targets = output.local_features[:, k:]  # (B, F-k, C)
        logits = torch.einsum("bpc,btc->bpt", F.normalize(predictions, dim=-1), F.normalize(targets, dim=-1)) / 0.1
        labels = torch.arange(logits.shape[1]).expand(logits.shape[0], -1)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        if self.calls in self.poison_calls or -1 in self.poison_calls:
            loss = loss * float("nan")
        accuracy = (logits.argmax(-1) == labels).float().mean().item()
        return ObjectiveOutput(loss, {"acc": accuracy, "chance": 1.0 / logits.shape[-1]})

    def on_update(self, step: int) -> dict[str, float]:
        self.updates_seen.append(step)
        return {"temperature": 1.0 / step}

    def warnings(self, metrics: dict[str, float]) -> list[str]:
        return [f"{self.warning_text} (temperature {metrics['temperature']:.3g})"] if self.warning_text else []


def build_tiny_objective(seed: int = 0, dropout: float = 0.1) -> TinyContrastive:
    torch.manual_seed(seed)
    config = tiny_encoder_config() | {"feature_dropout": dropout}
    encoder = build_encoder(to_config(EncoderConfig, config, "encoder"))
    return TinyContrastive(TinyContrastiveConfig(), encoder)


def speechlike_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Voiced-sounding audio: a gliding harmonic source with syllable-rate amplitude modulation, plus noise."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = rng.uniform(90, 220) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)))
    clip = 0.3 * envelope * voiced + 0.02 * rng.standard_normal(t.shape)
    return (clip / np.abs(clip).max() * 0.8).astype(np.float32)


def write_clips(directory: Path, count: int = 24, seed: int = 0, seconds: tuple[float, float] = (0.35, 0.6)) -> Path:
    """``count`` FLAC clips of ``seconds`` (min, max) and manifests ``train.tsv``, ``valid.tsv`` (6 clips)."""
    rng = np.random.default_rng(seed)
    audio_dir = directory / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        clip = speechlike_clip(rng, rng.uniform(*seconds))
        sf.write(audio_dir / f"clip{index:03d}.flac", clip, SAMPLE_RATE)
        rows.append(f"clip{index:03d}.flac\t{len(clip)}")
    for split, split_rows in (("train", rows[6:]), ("valid", rows[:6])):
        (directory / f"{split}.tsv").write_text("\n".join([str(audio_dir), *split_rows]) + "\n")
    return directory


def load_batches(manifest_dir: Path, batch_size: int = 3) -> list[AudioBatch]:
    """The train clips read back with soundfile, cropped to a common length: a plain list of batches."""
    lines = (manifest_dir / "train.tsv").read_text().splitlines()
    root, rows = Path(lines[0]), [line.split("\t")[0] for line in lines[1:]]
    clips = [torch.from_numpy(sf.read(root / row, dtype="float32")[0]) for row in rows]
    batches = []
    for start in range(0, len(clips) - batch_size + 1, batch_size):
        group = clips[start : start + batch_size]
        size = min(len(c) for c in group)
        waveforms = torch.stack([c[:size] for c in group])
        batches.append(AudioBatch(waveforms, torch.full((len(group),), size), rows[start : start + batch_size]))
    return batches


def tiny_data_config(manifest_dir: Path) -> dict:
    return {
        "manifest_dir": str(manifest_dir),
        "max_batch_samples": 30_000,
        "max_sample_size": 8_000,
        "min_sample_size": 4_000,
        "num_parallel_calls": 1,
        "prefetch": 2,
    }


def state_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    """Train the tiny objective on an AudioPipeline; each rank writes its final weights and the ids it saw."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("manifest_dir", type=Path)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    from audiossl.data.pipeline import AudioPipeline, DataConfig
    from audiossl.training import OptimConfig, Trainer, TrainerConfig

    torch.set_num_threads(1)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    objective = build_tiny_objective()
    objective.delay = args.delay
    data = AudioPipeline(to_config(DataConfig, tiny_data_config(args.manifest_dir), "data"), "train", rank, world_size)
    seen: list[str] = []
    trainer_cfg = TrainerConfig(
        max_steps=args.max_steps, save_every=args.save_every, log_every=4, keep_last=2, device="cpu",
        num_threads=1, progress=False, tensorboard=False,
    )
    optim = OptimConfig(lr=2e-3, warmup_steps=5)
    config = {"encoder": tiny_encoder_config()}
    Trainer(objective, _Recording(data, seen), trainer_cfg, optim, args.run_dir, config_to_save=config).fit()
    out = args.run_dir / f"rank{rank}"
    torch.save(objective.state_dict(), f"{out}.pt")
    (Path(f"{out}.json")).write_text(json.dumps({"digest": state_digest(objective.state_dict()), "ids": seen}))


class _Recording:
    """Pass-through data wrapper recording ``epoch/clip`` for each clip a rank trained on (sharding check)."""

    def __init__(self, data, seen: list[str]) -> None:
        self.data, self.seen = data, seen

    @property
    def epoch(self) -> int:
        return self.data.epoch

    def __iter__(self):
        for batch in self.data:
            self.seen.extend(f"epoch{self.data.epoch}/{clip}" for clip in batch.ids)
            yield batch

    def state_dict(self):
        return self.data.state_dict()

    def load_state_dict(self, state) -> None:
        self.data.load_state_dict(state)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
