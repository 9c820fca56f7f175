"""The audio data pipeline: fairseq manifest in, ``AudioBatch`` es out, built on ``fairseq2.data``.

One epoch is one fairseq2 pipeline::

    manifest rows (read once by Manifest.load) -> shuffle(seed + epoch) -> bucket_by_length(total samples)
    -> shuffle batches -> shard(rank, world_size) -> skip(resume position)
    -> map(decode + crop/pad + collate, native threads) -> prefetch

Choices and why:

* **Everything before ``shard`` is metadata** (row index and length), identical on every rank because
  every rank reads the same manifest with the same seed. Sharding whole *batches* (not clips) with
  ``allow_uneven=False`` therefore gives disjoint shards and exactly ``floor(batches / world_size)``
  batches on every rank, which DDP needs (a rank with one batch more waits forever in all-reduce).
  At most ``world_size - 1`` batches per epoch are left out, different ones each epoch.
  Evaluation (``train=False``) uses ``allow_uneven=True`` instead: nothing is dropped, and evaluation
  does not all-reduce per batch.
* **Decoding never raises.** In fairseq2 one exception breaks a pipeline for good, and real corpora
  hold damaged files; decoding goes through ``audiossl.audio.io.read_audio``, which returns a fault name
  instead, and bad files are dropped from their batch, counted and reported once (``fault_report``).
  A batch whose every file is bad is replaced by one readable clip chosen deterministically, so the
  batch count (and DDP lockstep) never depends on which files are broken.
* **Resume is exact and small.** Shuffle seeds are ``seed + epoch``-derived and crop offsets are a hash
  of ``(seed, epoch, utterance id)``, so a batch depends only on (epoch, index in epoch). The state is
  therefore just ``epoch`` and ``position`` (batches consumed); resuming rebuilds the epoch and skips
  ``position`` batches of metadata, without decoding them and without storing prefetched audio.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, final

import torch
import torch.nn.functional as F
from torch import Tensor

from audiossl.audio.io import FAULTS, AudioPolicy, read_audio
from audiossl.config import ConfigError, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.data.manifest import Manifest

log = logging.getLogger(__name__)

STATE_VERSION = 1
MAX_SUBSTITUTE_TRIES = 64
"""How many clips an all-bad batch tries before concluding that the corpus has no readable audio."""


EVAL_BATCH_SAMPLES = 16_000 * 60
"""Evaluation batches hold at least a minute of audio; longer utterances (none in LibriSpeech test) are reported."""


@dataclass
class DataConfig:
    """``conf/data/*.yaml``. Sizes are in samples at ``sample_rate``.

    ``max_batch_samples`` bounds a batch's *total* samples (padded size in padding mode, cropped size in
    crop mode), so batches of short clips hold more clips: memory per step stays flat. ``crop`` is
    the pretraining mode (every clip cut to ``max_sample_size`` at most and the batch to its shortest
    clip at random offsets, multiples of ``crop_step`` samples); without it clips are zero-padded with their lengths (fine-tuning, where
    labels cover the whole clip), and clips longer than ``max_sample_size`` are skipped as ``too_long``.
    ``shuffle``, ``drop_last`` and ``max_batches_per_epoch`` apply to training pipelines only:
    evaluation sees every clip once, in manifest order.
    """

    manifest_dir: str = "manifests/synth"
    train_split: str = "train"
    valid_split: str = "valid"
    labels: list[str] = field(default_factory=list)
    sample_rate: int = 16_000
    max_batch_samples: int = 1_400_000
    max_sample_size: int = 250_000
    min_sample_size: int = 32_000
    crop: bool = True
    crop_step: int = 1
    normalize: bool = False
    shuffle: bool = True
    seed: int = 1
    num_parallel_calls: int = 4
    prefetch: int = 4
    resample_to_target: bool = False
    downmix: bool = False
    drop_last: bool = False
    max_batches_per_epoch: int | None = None

    def validate(self) -> DataConfig:
        for key in ("sample_rate", "max_batch_samples", "max_sample_size", "num_parallel_calls", "crop_step"):
            check_positive(getattr(self, key), f"data.{key}")
        check_positive(self.min_sample_size, "data.min_sample_size", allow_zero=True)
        check_positive(self.prefetch, "data.prefetch", allow_zero=True)
        if self.max_batches_per_epoch is not None:
            check_positive(self.max_batches_per_epoch, "data.max_batches_per_epoch")
        if self.max_sample_size > self.max_batch_samples:
            raise ConfigError(
                f"invalid config at 'data.max_sample_size': {self.max_sample_size} does not fit in "
                f"data.max_batch_samples={self.max_batch_samples}"
            )
        if self.min_sample_size > self.max_sample_size:
            raise ConfigError(
                f"invalid config at 'data.min_sample_size': {self.min_sample_size} exceeds "
                f"data.max_sample_size={self.max_sample_size}"
            )
        return self

    def for_evaluation(self, labels: list[str]) -> DataConfig:
        """Every utterance of an evaluation split, in manifest order: no crop, shuffle or minimum length.

        Dropping short test utterances would silently change a WER, so the limits are lifted; batches hold
        at least ``EVAL_BATCH_SAMPLES``, and a file that cannot be read (or is longer than a batch) is
        counted in the pipeline's fault report. Every evaluation, extraction and k-means pass reads through
        this one config.
        """
        size = max(EVAL_BATCH_SAMPLES, self.max_batch_samples)
        return replace(self, labels=labels, crop=False, shuffle=False, min_sample_size=0, max_sample_size=size,
                       max_batch_samples=size, drop_last=False, max_batches_per_epoch=None)

    @property
    def audio_policy(self) -> AudioPolicy:
        return AudioPolicy(self.sample_rate, resample=self.resample_to_target, downmix=self.downmix)


# ---------------------------------------------------------------------------------------------- faults


@dataclass
class FaultReport:
    """Files skipped so far: ``counts`` per fault name and up to a few ``examples`` paths each.

    ``substituted_batches`` counts batches whose every file failed and that were replaced by one
    readable clip (see the module docstring).
    """

    counts: dict[str, int]
    examples: dict[str, list[str]]
    substituted_batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def table(self) -> str:
        """A Markdown table, one row per fault, for logs and reports."""
        if not self.counts:
            return "no faulty audio files"
        lines = ["| fault | files | meaning | examples |", "|---|---:|---|---|"]
        for fault, count in sorted(self.counts.items(), key=lambda item: -item[1]):
            lines.append(f"| {fault} | {count} | {FAULTS.get(fault, '')} | {', '.join(self.examples[fault])} |")
        if self.substituted_batches:
            lines.append(f"\n{self.substituted_batches} batch(es) had no readable file and were substituted")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


class FaultLog:
    """Thread-safe record of bad files: each (fault, path) is counted and warned about once.

    Decoding runs in fairseq2's native worker threads, hence the lock.
    """

    def __init__(self, num_examples: int = 3) -> None:
        self._paths: dict[str, dict[str, None]] = {}  # fault -> ordered set of paths
        self._lock = threading.Lock()
        self._num_examples = num_examples
        self.substituted_batches = 0

    def record(self, fault: str, path: str, detail: str = "", warn: bool = True) -> None:
        with self._lock:
            paths = self._paths.setdefault(fault, {})
            if path in paths:
                return
            paths[path] = None
        if warn:
            log.warning("skipping %s: %s (%s)", path, fault, detail or FAULTS.get(fault, ""))

    def record_substitution(self, failed: list[str], stand_in: str) -> None:
        with self._lock:
            self.substituted_batches += 1
        log.warning("every file of a batch failed (%s); substituted %s", ", ".join(failed), stand_in)

    def report(self) -> FaultReport:
        with self._lock:
            counts = {fault: len(paths) for fault, paths in self._paths.items()}
            examples = {fault: list(paths)[: self._num_examples] for fault, paths in self._paths.items()}
        return FaultReport(counts, examples, self.substituted_batches)

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"paths": {fault: list(paths) for fault, paths in self._paths.items()},
                    "substituted_batches": self.substituted_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Add earlier faults so a resumed run reports them and does not warn about them again."""
        with self._lock:
            for fault, paths in state["paths"].items():
                self._paths.setdefault(fault, {}).update(dict.fromkeys(paths))
            self.substituted_batches = state["substituted_batches"]


# ---------------------------------------------------------------------------------------------- manifest


@dataclass
class ManifestTable:
    """A manifest held as columns: root, relative paths, sample counts, label lines per kind.

    Columns (not row objects) because the pipeline only moves row indices around; labels are attached
    by row index when a batch is assembled.
    """

    tsv_path: str
    root: str
    ids: list[str]
    sizes: list[int]
    labels: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, row: int) -> str:
        return os.path.join(self.root, self.ids[row])


def load_manifest(manifest_dir: str, split: str, label_kinds: Sequence[str]) -> ManifestTable:
    """Read ``{split}.tsv`` and ``{split}.{kind}`` for every kind through ``Manifest.load``, as columns.

    ``Manifest.load`` owns the checks (root line, row format, one label line per row, each error naming
    the file and line); a ``ManifestError`` is a ``ValueError``.
    """
    tsv_path = os.path.join(manifest_dir, f"{split}.tsv")
    manifest = Manifest.load(tsv_path, labels=label_kinds)
    return ManifestTable(tsv_path, str(manifest.root), [row.relpath for row in manifest.rows],
                         [row.num_samples for row in manifest.rows], manifest.labels)


# ---------------------------------------------------------------------------------------------- batches


def stable_int(*parts: object) -> int:
    """A 63-bit integer from ``parts`` that is the same in every process and Python version.

    ``hash()`` is salted per process, which would make crops differ after a restart.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def crop_batch(waveforms: list[Tensor], max_size: int, offset_seeds: list[int], step: int = 1) -> tuple[Tensor, Tensor]:
    """Cut every clip to the batch's shortest (at most ``max_size``) at a seeded random offset.

    Pretraining crops instead of padding because convolutional feature encoders with group norm are
    not padding-invariant; the offsets come from ``offset_seeds`` so a resumed run crops identically.
    Offsets are multiples of ``step`` (an encoder's frame stride keeps frame labels on the frame grid).
    Returns the crops and their offsets.
    """
    size = min(min(len(w) for w in waveforms), max_size)
    offsets = [seed % ((len(w) - size) // step + 1) * step for w, seed in zip(waveforms, offset_seeds)]
    crops = [w[offset: offset + size] for w, offset in zip(waveforms, offsets)]
    return torch.stack(crops), torch.tensor(offsets, dtype=torch.int64)


def pad_batch(waveforms: list[Tensor]) -> Tensor:
    """Zero-pad clips to the longest one (fine-tuning keeps whole clips; lengths mark the padding)."""
    padded = torch.zeros(len(waveforms), max(len(w) for w in waveforms))
    for index, waveform in enumerate(waveforms):
        padded[index, : len(waveform)] = waveform
    return padded


def normalize_utterance(waveform: Tensor) -> Tensor:
    """Zero mean, unit variance over the whole clip (wav2vec 2.0 large models expect it)."""
    return F.layer_norm(waveform, waveform.shape)


# ---------------------------------------------------------------------------------------------- pipeline


@final
class AudioPipeline:
    """Batches of one manifest split for one rank; iterate once per epoch, or ``iter_epochs()`` forever.

    ``state_dict()`` / ``load_state_dict()`` resume at exactly the next batch an uninterrupted run
    would have produced, mid-epoch or at an epoch boundary. Load the state before iterating.
    """

    def __init__(self, cfg: DataConfig, split: str, rank: int = 0, world_size: int = 1, train: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.cfg, self.split, self.rank, self.world_size, self.train = cfg, split, rank, world_size, train
        self.epoch = 0
        self._position = 0
        self._faults = FaultLog()
        self._policy = cfg.audio_policy
        self._table = load_manifest(cfg.manifest_dir, split, cfg.labels)
        self._rows = self._usable_rows()
        self._num_batches: dict[int, int] = {}
        if train and self.num_batches() == 0:
            raise ValueError(
                f"{self._table.tsv_path}: {len(self._rows)} usable clips make no batch for rank {rank} of "
                f"{world_size} (fewer batches than ranks?); see fault_report()"
            )

    # ------------------------------------------------------------------ public API

    def __iter__(self) -> Iterator[AudioBatch]:
        """The rest of the current epoch (all of it when starting fresh); then ``epoch`` advances."""
        if self._position and self._position >= self.num_batches():  # stopped right at an epoch's end
            self._next_epoch()
        for batch in self._build(self.epoch, skip=self._position):
            self._position += 1
            yield batch
        self._next_epoch()

    def iter_epochs(self) -> Iterator[AudioBatch]:
        """Batches forever, epoch after epoch (reshuffled with ``seed + epoch``): the trainer's source."""
        while True:
            yield from self

    def __len__(self) -> int:
        return self.num_batches()

    @property
    def manifest(self) -> ManifestTable:
        """The split as read: paths, sample counts and the label lines of ``cfg.labels``."""
        return self._table

    @property
    def num_rows(self) -> int:
        """Rows of the manifest split, before any file is skipped (what a full evaluation should score)."""
        return len(self._table)

    def num_batches(self, epoch: int | None = None) -> int:
        """Batches this rank yields in ``epoch`` (equal on every rank when training).

        Counted on metadata alone (no decoding); cached, because bucket remainders make it vary a little
        between epochs.
        """
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._num_batches:
            self._num_batches[epoch] = sum(1 for _ in self._metadata(epoch).and_return())
        return self._num_batches[epoch]

    def fault_report(self) -> FaultReport:
        return self._faults.report()

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "position": self._position,
            "seed": self.cfg.seed,
            "world_size": self.world_size,
            "num_rows": self.num_rows,
            "faults": self._faults.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; a different seed, world size or manifest cannot replay the same batches."""
        for key, mine in (("seed", self.cfg.seed), ("world_size", self.world_size), ("num_rows", self.num_rows)):
            if state[key] != mine:
                log.warning("resuming data state saved with %s=%s, now %s: batches will differ", key, state[key], mine)
        self.epoch, self._position = int(state["epoch"]), int(state["position"])
        self._faults.load_state_dict(state["faults"])

    # ------------------------------------------------------------------ building

    def _next_epoch(self) -> None:
        self.epoch += 1
        self._position = 0

    def _usable_rows(self) -> list[list[int]]:
        """Rows whose manifest length passes the size limits, as ``[row, bucketing length]`` records.

        Filtering on the manifest (not after decoding) keeps batch sizes predictable; a manifest that
        lies about a length is caught again after decoding. Records are lists, not dicts: fairseq2 holds
        them in its shuffle buffers, where a dict costs about five times the memory (600 MB against
        120 MB for a 281k-clip LibriSpeech 960 h manifest).
        """
        usable = []
        for row, size in enumerate(self._table.sizes):
            fault = self._size_fault(size)
            if fault is not None:
                self._faults.record(fault, self._table.path(row), f"{size} samples", warn=self.rank == 0)
                continue
            usable.append([row, min(size, self.cfg.max_sample_size)])
        return usable

    def _size_fault(self, size: int) -> str | None:
        if size < max(self.cfg.min_sample_size, 1):
            return "too_short"
        if not self.cfg.crop and size > self.cfg.max_sample_size:
            return "too_long"
        return None

    def _bucket_sizes(self) -> list[tuple[int, int]]:
        """Clips per batch for each length bucket so that clips x length <= ``max_batch_samples``."""
        from fairseq2.data.data_pipeline import create_bucket_sizes  # noqa: PLC0415

        # fairseq2 wants the budget to be a multiple of the longest bucket; stretching that bucket to
        # budget / (clips that fit at max_sample_size) loses at most a few samples of the budget, where
        # rounding the budget down to a multiple of max_sample_size could lose a whole clip's worth.
        clips_at_max = self.cfg.max_batch_samples // self.cfg.max_sample_size
        longest_bucket = self.cfg.max_batch_samples // clips_at_max
        min_len = min(max(self.cfg.min_sample_size, 1), self.cfg.max_sample_size)
        return create_bucket_sizes(
            max_num_elements=longest_bucket * clips_at_max, max_seq_len=longest_bucket, min_seq_len=min_len
        )

    def _metadata(self, epoch: int) -> Any:
        """Shuffle, bucket and shard row records: identical on every rank up to ``shard``."""
        from fairseq2.data.data_pipeline import read_sequence  # noqa: PLC0415

        shuffle = self.train and self.cfg.shuffle
        builder = read_sequence(self._rows)
        if shuffle:
            builder = builder.shuffle(0, seed=stable_int(self.cfg.seed, epoch, "clips"))
        builder = builder.bucket_by_length(
            self._bucket_sizes(), selector="[1]", drop_remainder=self.train and self.cfg.drop_last
        )
        if shuffle:
            builder = builder.shuffle(0, seed=stable_int(self.cfg.seed, epoch, "batches"))
        builder = builder.shard(self.rank, self.world_size, allow_uneven=not self.train)
        if self.train and self.cfg.max_batches_per_epoch is not None:
            builder = builder.take(self.cfg.max_batches_per_epoch)
        return builder

    def _build(self, epoch: int, skip: int) -> Any:
        builder = self._metadata(epoch).skip(skip)
        load = partial(self._load_bucket, epoch)
        builder = builder.map(load, num_parallel_calls=self.cfg.num_parallel_calls)
        if self.cfg.prefetch:
            builder = builder.prefetch(self.cfg.prefetch)
        return builder.and_return()

    # ------------------------------------------------------------------ decoding (runs in worker threads)

    def _decode_row(self, row: int) -> Tensor | None:
        """The clip of manifest row ``row``, or None after recording why it was skipped."""
        path = self._table.path(row)
        result = read_audio(path, self._policy, expected_frames=self._table.sizes[row])
        if result.waveform is None:
            self._faults.record(result.fault or "unreadable", path, result.detail)
            return None
        fault = self._size_fault(len(result.waveform))
        if fault is not None:
            self._faults.record(fault, path, f"{len(result.waveform)} samples after decoding")
            return None
        return normalize_utterance(result.waveform) if self.cfg.normalize else result.waveform

    def _load_bucket(self, epoch: int, bucket: list[list[int]]) -> AudioBatch:
        rows = [row for row, _ in bucket]
        decoded = [(row, self._decode_row(row)) for row in rows]
        good = [(row, waveform) for row, waveform in decoded if waveform is not None]
        if not good:
            good = [self._substitute(epoch, rows)]
        return self._assemble(epoch, [row for row, _ in good], [waveform for _, waveform in good])

    def _substitute(self, epoch: int, failed_rows: list[int]) -> tuple[int, Tensor]:
        """One readable clip standing in for a batch whose every file failed.

        Dropping the batch would leave this rank one batch short and hang DDP. The stand-in is the first
        readable clip after a seeded position, so it is the same after a restart.
        """
        start = stable_int(self.cfg.seed, epoch, "substitute", failed_rows[0])
        for step in range(min(MAX_SUBSTITUTE_TRIES, len(self._rows))):
            row = self._rows[(start + step) % len(self._rows)][0]
            waveform = self._decode_row(row)
            if waveform is not None:
                self._faults.record_substitution([self._table.ids[r] for r in failed_rows], self._table.ids[row])
                return row, waveform
        raise RuntimeError(f"{self._table.tsv_path}: no readable audio found; fault report:\n{self.fault_report()}")

    def _assemble(self, epoch: int, rows: list[int], waveforms: list[Tensor]) -> AudioBatch:
        if self.cfg.crop:
            crop_epoch = epoch if self.train else 0  # validation crops stay fixed so losses compare
            seeds = [stable_int(self.cfg.seed, crop_epoch, self._table.ids[row]) for row in rows]
            stacked, offsets = crop_batch(waveforms, self.cfg.max_sample_size, seeds, self.cfg.crop_step)
            lengths = torch.full((len(rows),), stacked.shape[1], dtype=torch.int64)
        else:
            stacked, offsets = pad_batch(waveforms), None
            lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.int64)
        labels = {kind: [lines[row] for row in rows] for kind, lines in self._table.labels.items()}
        ids = [self._table.ids[row] for row in rows]
        return AudioBatch(stacked.contiguous(), lengths, ids, labels, self.cfg.sample_rate, offsets)


__all__ = [
    "AudioPipeline",
    "DataConfig",
    "FaultLog",
    "FaultReport",
    "ManifestTable",
    "load_manifest",
]
