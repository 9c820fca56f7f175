"""HuBERT targets: k-means cluster ids of frozen features, one id per frame of the encoder that will learn them.

Iteration 0 clusters MFCC (13 + deltas + delta-deltas, per-utterance CMVN); later iterations cluster a
layer of a trained encoder (any upstream ``downstream.upstream`` can build). One model is fitted, on a
random subset of the training split's frames that fits memory, saved, and reused for every split: train
and valid never get labels from two different clusterings (fairseq#4312, #5453).

Labels are written beside the manifest as a label file, ``{split}.{label}`` (one line of space-separated
ids per manifest row, like ``.ltr``), plus ``dict.{label}.txt``. They sit on the *target* encoder's frame
grid (``frame_stride`` samples apart, frame ``t`` covering ``[t * stride, t * stride + receptive_field)``):
each target frame takes the cluster of the source frame whose centre is nearest to its own, so 10 ms MFCC
frames feed a 20 ms wav2vec 2.0-style encoder exactly (every second frame).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from audiossl.config import ConfigError, check_positive
from audiossl.data.manifest import parse_alignment, read_tsv, write_lines
from audiossl.data.pipeline import EVAL_BATCH_SAMPLES, AudioPipeline, DataConfig
from audiossl import metrics
from audiossl.features.frozen import FrameGrid, FrozenSplit, extract
from audiossl.features.upstream import build_upstream

log = logging.getLogger(__name__)



@dataclass
class KMeansConfig:
    """``conf/kmeans.yaml``: what to cluster, where the labels go, and the target frame grid."""

    features: str = "mfcc"  # mfcc | a checkpoint or run directory (its layer ``layer``)
    layer: int = -1  # hidden state of an encoder (0 = projected conv features, -1 = last)
    cmvn: bool = True  # per-utterance normalisation of MFCC (front-ends only)
    manifest_dir: str = "manifests/synth"
    fit_split: str = "train_clean"
    splits: list[str] = field(default_factory=lambda: ["train_clean", "dev_clean"])
    label: str = "km"
    num_clusters: int = 100
    max_fit_frames: int = 250_000
    frame_stride: int = 320  # the encoder that learns the targets (wav2vec 2.0 stack: 320 / 400)
    receptive_field: int = 400
    quality_split: str | None = "dev_clean"  # has .align: phone purity / PNMI of the labels
    seed: int = 1
    force: bool = False  # refit even when a model with the same settings exists
    progress: bool = True

    def validate(self) -> KMeansConfig:
        for key in ("num_clusters", "max_fit_frames", "frame_stride", "receptive_field"):
            check_positive(getattr(self, key), key)
        if not self.label.isidentifier():
            raise ConfigError(f"invalid config at 'label': {self.label!r} must be a plain name (it becomes "
                              "the label file's extension)")
        return self

    @property
    def model_path(self) -> Path:
        return Path(self.manifest_dir) / f"{self.label}.kmeans.pt"

    def fit_settings(self) -> dict[str, Any]:
        """What decides the clustering: a saved model is reused only when these match."""
        return {key: getattr(self, key) for key in ("features", "layer", "cmvn", "fit_split", "num_clusters",
                                                    "max_fit_frames", "seed")}


@dataclass
class KMeansModel:
    centres: Tensor  # (k, dim)
    settings: dict[str, Any]

    def assign(self, features: Tensor) -> Tensor:
        """Nearest centre (squared Euclidean) for each ``(N, dim)`` row, in chunks."""
        norms = self.centres.pow(2).sum(1)
        ids = [((chunk.float() @ self.centres.T) * -2 + norms).argmin(1) for chunk in features.split(65536)]
        return torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)

    def save(self, path: Path) -> None:
        torch.save({"centres": self.centres, "settings": self.settings}, path)

    @classmethod
    def load(cls, path: Path) -> KMeansModel:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(state["centres"], state["settings"])


def split_features(cfg: KMeansConfig, split: str, labels: list[str]) -> FrozenSplit:
    upstream = build_upstream(cfg.features, cmvn=cfg.cmvn)
    data = DataConfig(manifest_dir=cfg.manifest_dir, max_batch_samples=EVAL_BATCH_SAMPLES).for_evaluation(labels)
    pipeline = AudioPipeline(data, split, train=False)
    frozen = extract(upstream, pipeline, total=len(pipeline), desc=f"features {split}", progress=cfg.progress)
    if len(frozen.ids) != pipeline.num_rows:
        raise ValueError(f"{split}: {pipeline.num_rows - len(frozen.ids)} file(s) could not be read; every row "
                         f"needs a label line:\n{pipeline.fault_report()}")
    return frozen


def fit(cfg: KMeansConfig, frozen: FrozenSplit) -> KMeansModel:
    """MiniBatchKMeans (k-means++ init, scikit-learn) on at most ``max_fit_frames`` random frames."""
    from sklearn.cluster import MiniBatchKMeans

    features = frozen.layers[cfg.layer]
    generator = torch.Generator().manual_seed(cfg.seed)
    chosen = torch.randperm(len(features), generator=generator)[: cfg.max_fit_frames]
    sample = features[chosen].float().numpy()
    if len(sample) < cfg.num_clusters:
        raise ConfigError(f"invalid config at 'num_clusters': {cfg.num_clusters} clusters from {len(sample)} frames")
    model = MiniBatchKMeans(n_clusters=cfg.num_clusters, init="k-means++", batch_size=10_000, n_init=3,
                            max_no_improvement=100, random_state=cfg.seed).fit(sample)
    log.info("k-means: %d clusters from %d frames, inertia %.1f per frame", cfg.num_clusters, len(sample),
             model.inertia_ / len(sample))
    return KMeansModel(torch.from_numpy(model.cluster_centers_).float(), cfg.fit_settings())


def frame_labels(model: KMeansModel, frozen: FrozenSplit, layer: int, num_samples: list[int],
                 target: FrameGrid) -> list[Tensor]:
    """Cluster ids on the target grid for every utterance (nearest source frame by centre time)."""
    labels = []
    for index, samples in enumerate(num_samples):
        source = model.assign(frozen.utterance(layer, index))
        count = max(0, int((samples - 2 * target.first_centre) // target.stride) + 1)
        if not len(source):
            labels.append(torch.zeros(0, dtype=torch.long))
            continue
        centres = target.centres(count) * frozen.grid.sample_rate
        nearest = ((centres - frozen.grid.first_centre) / frozen.grid.stride).round().long()
        labels.append(source[nearest.clamp(0, len(source) - 1)])
    return labels


def label_quality(labels: list[Tensor], alignments: list[str], ids: list[str], target: FrameGrid) -> metrics.Metrics:
    """Phone purity, cluster purity and PNMI of frame labels against ``.align`` phones (silence included)."""
    phone_ids: dict[str, int] = {}
    phones, clusters = [], []
    for frame_ids, line, utt in zip(labels, alignments, ids):
        centres = target.centres(len(frame_ids))
        for phone, start, end in parse_alignment(line, utt):
            inside = ((centres >= start) & (centres < end)).nonzero().flatten()
            phones += [phone_ids.setdefault(phone, len(phone_ids))] * len(inside)
            clusters += frame_ids[inside].tolist()
    return metrics.cluster_quality(phones, clusters)


def run(cfg: KMeansConfig) -> dict[str, Any]:
    """Fit (or reuse) the model, write ``{split}.{label}`` for every split, and score the labels."""
    cfg.validate()
    target = FrameGrid(cfg.frame_stride, cfg.receptive_field / 2, 16_000)
    model_path = cfg.model_path
    model = KMeansModel.load(model_path) if model_path.is_file() and not cfg.force else None
    if model is not None and model.settings != cfg.fit_settings():
        raise ConfigError(f"invalid config at 'force': {model_path} was fitted with {model.settings}; refit with "
                          f"force=true (then relabel every split) or choose another label name")
    splits = list(dict.fromkeys(cfg.splits + ([cfg.quality_split] if cfg.quality_split else [])))
    if model is None:
        model = fit(cfg, split_features(cfg, cfg.fit_split, []))
        model.save(model_path)
    summary: dict[str, Any] = {"model": str(model_path), "settings": model.settings,
                               "grid": {"frame_stride": cfg.frame_stride, "receptive_field": cfg.receptive_field}}
    counts = torch.zeros(cfg.num_clusters, dtype=torch.long)
    for split in splits:
        with_align = split == cfg.quality_split
        frozen = split_features(cfg, split, ["align"] if with_align else [])
        rows = _manifest_rows(Path(cfg.manifest_dir) / f"{split}.tsv")
        position = {utt: index for index, utt in enumerate(frozen.ids)}
        sizes = dict(rows)
        labels = frame_labels(model, frozen, cfg.layer, [sizes[utt] for utt in frozen.ids], target)
        write_lines(Path(cfg.manifest_dir) / f"{split}.{cfg.label}",
                    (" ".join(map(str, labels[position[relpath]].tolist())) for relpath, _ in rows))
        if split in cfg.splits:
            counts += torch.bincount(torch.cat(labels), minlength=cfg.num_clusters)
        if with_align:
            summary["quality"] = {"split": split, **label_quality(labels, frozen.labels["align"], frozen.ids, target)}
    dict_lines = (f"{cluster} {int(counts[cluster])}" for cluster in range(cfg.num_clusters))
    write_lines(Path(cfg.manifest_dir) / f"dict.{cfg.label}.txt", dict_lines)
    quality_path(cfg.manifest_dir, cfg.label).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def quality_path(manifest_dir: str | Path, label: str) -> Path:
    """Where ``run`` leaves the labels' settings and cluster quality (read back by pretraining runs)."""
    return Path(manifest_dir) / f"{label}.quality.json"


def describe_quality(quality: dict[str, Any]) -> str:
    return (f"phone purity {quality['phone_purity']:.3f}, cluster purity {quality['cluster_purity']:.3f}, "
            f"PNMI {quality['pnmi']:.3f} on {quality['split']} ({quality['clusters_used']} clusters used)")


def _manifest_rows(tsv: Path) -> list[tuple[str, int]]:
    """(relative path, samples) per manifest row, in manifest order (extraction order differs)."""
    _, rows = read_tsv(tsv)
    return [(row.relpath, row.num_samples) for row in rows]
