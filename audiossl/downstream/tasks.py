"""Supervised downstream tasks as ``Objective`` s, so the pretraining ``Trainer`` runs them unchanged.

One class per kind of output: ``CTCTask`` (ASR over letters, phoneme recognition over phones),
``FramePhoneTask`` (the CPC paper's frame-level phone classification probe) and ``SpeakerTask``
(utterance-level speaker ID). They share ``DownstreamTask``: an upstream, a layer reader (last layer or
SUPERB weighted sum), SpecAugment-style masking, a head, and the wav2vec 2.0 freezing schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from typing_extensions import override

from audiossl.audio.features import utterance_cmvn
from audiossl.config import ConfigError, check_choice
from audiossl.data.batch import AudioBatch
from audiossl.data.manifest import parse_alignment
from audiossl.downstream.heads import (
    FrameMasker,
    LastLayer,
    PooledClassifier,
    WeightedLayerSum,
    build_frame_head,
    stack_frames,
)
from audiossl.downstream import metrics
from audiossl.downstream.decode import GreedyDecoder
from audiossl.downstream.frozen import FrameGrid
from audiossl.downstream.upstream import EncoderUpstream, Upstream, UpstreamSpec, rebuild_upstream, resolve_checkpoint
from audiossl.downstream.vocab import Vocabulary, read_dict_file
from audiossl.models.output import EncoderOutput
from audiossl.objectives.base import Objective, ObjectiveOutput

TASKS = ("asr", "phoneme", "phone_frames", "speaker")
CTC_TASKS = ("asr", "phoneme")
"""Tasks whose output is a token sequence scored by CTC (``CTCTask``)."""
MODES = ("probe", "weighted", "finetune")
LABEL_KIND = {"asr": "ltr", "phoneme": "phn", "phone_frames": "align", "speaker": "spk"}
"""The manifest label file each task trains on."""
SELECT_METRIC = {"asr": ("wer_then_cer", False), "phoneme": ("per", False), "phone_frames": ("accuracy", True),
                 "speaker": ("accuracy", True)}
"""Model selection metric on the dev split and whether higher is better. ``wer_then_cer`` is dev WER with
CER as the tie-break (``wer + cer / 1000``): early in few-label training many checkpoints tie at 100 % WER
while their CER still tells them apart."""
DEV_METRICS = {"asr": ("wer", "cer", "wer_then_cer"), "phoneme": ("per",), "phone_frames": ("accuracy",),
               "speaker": ("accuracy",)}
"""What the dev evaluation reports per task; ``task.select_metric`` may name any of them. CER is the useful
choice while WER is still at or above 100 % (tiny few-label runs), where WER cannot rank checkpoints."""
IGNORE = -100


@dataclass
class MaskingConfig:
    """SpecAugment-like masking of the head input in training (wav2vec 2.0 ``mask_prob`` / ``mask_channel_prob``)."""

    time_prob: float = 0.0
    time_span: int = 10
    channel_prob: float = 0.0
    channel_span: int = 16


@dataclass
class TaskConfig:
    """One downstream task and how much of the upstream it may change.

    ``mode``: ``probe`` (frozen upstream, last layer, linear head), ``weighted`` (frozen upstream, learned
    weighted sum of all layers, ``head``), ``finetune`` (feature encoder always frozen, context network
    trained after ``freeze_context_updates`` updates).
    ``holdout_fraction``: speaker ID only: share of each training speaker's utterances kept for test (as much
    again goes to dev).
    ``frame_stack``: CTC tasks only: ``k`` consecutive upstream frames are concatenated into one head frame,
    so a 10 ms upstream feeds a 20 ms CTC head at ``k = 2`` (half the BiLSTM steps, the same information).
    ``cache_features``: frozen modes only: keep each utterance's hidden states in memory after its first pass,
    so later epochs skip the upstream (all layers, float32: about 2 MB per minute of audio for a tiny
    encoder at 10 ms, 35 MB for BASE; meant for few-label splits, not 100 h).
    ``utterance_norm``: per-utterance mean and variance normalisation of the head input over its valid frames
    (CMVN, as the fbank and MFCC front-ends do), which removes an utterance's stationary channel and level
    offsets before the head sees them.
    """

    name: str = "asr"
    mode: str = "finetune"
    head: str = "linear"
    head_hidden: int = 256
    head_layers: int = 2
    dropout: float = 0.1
    freeze_context_updates: int = 0
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    holdout_fraction: float = 0.1
    select_metric: Optional[str] = None
    frame_stack: int = 1
    cache_features: bool = False
    utterance_norm: bool = False

    def check(self, key: str = "task") -> TaskConfig:
        check_choice(self.name, TASKS, f"{key}.name")
        check_choice(self.mode, MODES, f"{key}.mode")
        check_choice(self.head, ("linear", "bilstm"), f"{key}.head")
        if self.mode == "probe" and self.head != "linear":
            raise ConfigError(f"invalid config at '{key}.head': mode=probe means a linear head, got {self.head!r}")
        if not 0.0 < self.holdout_fraction <= 1 / 3:
            raise ConfigError(f"invalid config at '{key}.holdout_fraction': must be in (0, 1/3]")
        if self.select_metric is not None:
            check_choice(self.select_metric, DEV_METRICS[self.name], f"{key}.select_metric")
        if self.cache_features and self.mode == "finetune":
            raise ConfigError(f"invalid config at '{key}.cache_features': the upstream trains in mode=finetune, "
                              "so its features change every update; cache only with mode=probe or weighted")
        if self.frame_stack < 1 or (self.frame_stack > 1 and self.name not in CTC_TASKS):
            raise ConfigError(f"invalid config at '{key}.frame_stack': must be >= 1, and 1 for tasks other than "
                              f"the CTC ones {CTC_TASKS}; got {self.frame_stack} for {self.name}")
        return self

    def selection(self) -> tuple[str, bool]:
        """The dev metric that picks ``best.pt`` and whether higher is better (``select_metric`` or the default)."""
        if self.select_metric is None:
            return SELECT_METRIC[self.name]
        return self.select_metric, self.select_metric == "accuracy"


class DownstreamTask(Objective):
    """Upstream -> layer reader -> masking -> head. Subclasses add the targets, the loss and predictions.

    ``encoder`` is the upstream (the ``Objective`` convention), so checkpoints hold the encoder weights,
    fine-tuned or not, and a fine-tuning checkpoint is self-contained for evaluation.
    """

    def __init__(self, cfg: TaskConfig, upstream: Upstream) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = upstream
        self.reader: nn.Module = WeightedLayerSum(upstream.num_layers) if cfg.mode == "weighted" else LastLayer()
        m = cfg.masking
        self.masker = FrameMasker(m.time_prob, m.time_span, m.channel_prob, m.channel_span)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.context_trainable: bool | None = None
        self.feature_cache = FeatureCache() if cfg.cache_features and upstream.padding_invariant else None
        self._sync_schedule()

    def represent(self, batch: AudioBatch) -> tuple[Tensor, Tensor]:
        """Head input ``(B, F, D)`` and valid frame counts ``(B,)``.

        Fine-tuning masks inside the encoder, before the context network (wav2vec 2.0); a frozen upstream
        (or a front-end) has its output masked instead, SpecAugment-style, so the head still sees noise.
        """
        self._sync_schedule()
        if self.masks_inside:
            output = self.encoder(batch.waveforms, batch.lengths, masker=self.masker)
            return self.reader(output), output.lengths
        if self.feature_cache is not None and self.training:
            output = self.feature_cache.output(batch, self.encoder)
        else:
            output = self.encoder(batch.waveforms, batch.lengths)
        features = self.reader(output)
        if self.cfg.utterance_norm:
            features = utterance_cmvn(features, output.lengths)
        return self.masker(features), output.lengths

    @property
    def masks_inside(self) -> bool:
        return self.cfg.mode == "finetune" and isinstance(self.encoder, EncoderUpstream)

    @override
    def on_update(self, step: int) -> dict[str, float]:
        """Unfreeze the context network once ``freeze_context_updates`` updates have trained the head alone."""
        self.updates.fill_(step)
        return {"context_trainable": 1.0} if self._sync_schedule() else {}

    def _sync_schedule(self) -> bool:
        """Match the freezing state to the update count; True when the context network just thawed.

        The count is a buffer, so it is in every checkpoint: a run resumed past the threshold (or a
        checkpoint loaded for evaluation) comes back with the right parts frozen before its first batch.
        """
        wanted = self.cfg.mode == "finetune" and int(self.updates) >= self.cfg.freeze_context_updates
        if wanted == self.context_trainable:
            return False
        self.encoder.set_trainable(feature_encoder=False, context=wanted, may_thaw=self.cfg.mode == "finetune")
        self.context_trainable = wanted
        return wanted

    def parameter_groups(self, lr: float, encoder_lr_scale: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: the head at ``lr``; the context network (``finetune`` only) at a scaled lr.

        The feature encoder is never handed to the optimizer. The context network is, from the start, even
        while frozen: it gets no gradient until unfrozen (AdamW skips it), and the optimizer state has the
        same shape before and after, so resuming works at any step. Weight decay skips biases and norms.
        """
        upstream = {id(p) for p in self.encoder.parameters()}
        head = [p for p in self.parameters() if id(p) not in upstream]
        groups = _decay_groups(head, lr, weight_decay)
        if self.cfg.mode == "finetune":
            context = [p for name, p in self.encoder.named_parameters() if not name.startswith("feature_encoder.")]
            groups += _decay_groups(context, lr * encoder_lr_scale, weight_decay)
        return groups


class FeatureCache:
    """Each utterance's frozen hidden states, kept after its first pass (``task.cache_features``).

    A frozen upstream gives an utterance the same frames in every epoch, so with few labels most of a
    step's upstream work is repeated work. The cache serves training batches only: utterance ids are unique
    within one training split, while evaluation may meet the same ids in another condition (a corrupted
    copy of a test set). Only upstreams whose frames do not depend on the batch's padding
    are cached (``Upstream.padding_invariant``); a batch with any new utterance runs the upstream once for
    the whole batch and stores the new ones. ``local_features`` are not kept (no downstream task reads
    them); the first hidden state stands in for them.
    """

    def __init__(self) -> None:
        self.layers: dict[str, list[Tensor]] = {}

    def output(self, batch: AudioBatch, upstream: Upstream) -> EncoderOutput:
        if any(utt not in self.layers for utt in batch.ids):
            with torch.no_grad():
                fresh = upstream(batch.waveforms, batch.lengths)
            for row, utt in enumerate(batch.ids):
                length = int(fresh.lengths[row])
                self.layers.setdefault(utt, [layer[row, :length].detach() for layer in fresh.hidden_states])
        stored = [self.layers[utt] for utt in batch.ids]
        lengths = torch.tensor([items[0].shape[0] for items in stored], device=batch.waveforms.device)
        hidden = [pad_sequence([items[depth] for items in stored], batch_first=True)
                  for depth in range(len(stored[0]))]
        return EncoderOutput(features=hidden[-1], lengths=lengths, hidden_states=hidden, local_features=hidden[0])


def _decay_groups(params: list[nn.Parameter], lr: float, weight_decay: float) -> list[dict[str, Any]]:
    return [{"params": [p for p in params if p.dim() >= 2], "lr": lr, "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "lr": lr, "weight_decay": 0.0}]


class CTCTask(DownstreamTask):
    """CTC over a letter (ASR, ``|`` word boundaries) or phone vocabulary; blank is index 0."""

    def __init__(self, cfg: TaskConfig, upstream: Upstream, vocab: Vocabulary) -> None:
        super().__init__(cfg, upstream)
        self.vocab = vocab
        self.label_kind = LABEL_KIND[cfg.name]
        self.head = build_frame_head(cfg.head, upstream.dim * cfg.frame_stack, len(vocab), cfg.head_hidden,
                                     cfg.head_layers, cfg.dropout)

    def log_probs(self, batch: AudioBatch) -> tuple[Tensor, Tensor]:
        """``(B, F, V)`` log-probabilities and frame counts: the input of every CTC decoder."""
        features, lengths = stack_frames(*self.represent(batch), self.cfg.frame_stack)
        return self.head(features, lengths).log_softmax(dim=-1), lengths

    def output_grid(self, sample_rate: int) -> FrameGrid:
        """Where the CTC output frames sit in time: the upstream's grid, coarsened by ``frame_stack``."""
        grid = FrameGrid.of(self.encoder, sample_rate)
        k = self.cfg.frame_stack
        return FrameGrid(grid.stride * k, grid.first_centre + grid.stride * (k - 1) / 2, sample_rate)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        log_probs, frames = self.log_probs(batch)
        targets, target_lengths = self.vocab.encode_batch(batch.labels[self.label_kind], batch.ids)
        targets, target_lengths = targets.to(log_probs.device), target_lengths.to(log_probs.device)
        losses = F.ctc_loss(log_probs.transpose(0, 1), targets, frames, target_lengths, blank=0,
                            reduction="none", zero_infinity=True)
        loss = (losses / target_lengths.clamp(min=1)).mean()
        too_short = (frames < target_lengths).float().mean().item()
        return ObjectiveOutput(loss, {"too_short": too_short})

    @override
    def warnings(self, metrics: dict[str, float]) -> list[str]:
        if metrics.get("too_short", 0.0) > 0:
            return ["some utterances have fewer encoder frames than label tokens: CTC cannot emit them "
                    "(their loss is zeroed); check the frame rate against the label kind"]
        return []

    def reference(self, batch: AudioBatch, index: int) -> str:
        """Scoring reference: words for ASR (from ``.wrd`` when present), tokens otherwise."""
        if self.vocab.is_letters and "wrd" in batch.labels:
            return batch.labels["wrd"][index]
        return self.vocab.to_text(batch.labels[self.label_kind][index].split())


class FramePhoneTask(DownstreamTask):
    """Frame-level phone classification (CPC paper's linear probe): one phone label per encoder frame.

    Labels come from ``.align`` lines (``PHONE:START:END`` in seconds) mapped onto the upstream's frame
    grid; frames that no segment covers are ignored in the loss and in accuracy.
    """

    def __init__(self, cfg: TaskConfig, upstream: Upstream, phones: list[str]) -> None:
        super().__init__(cfg, upstream)
        self.phones = phones
        self.index = {phone: i for i, phone in enumerate(phones)}
        self.head = build_frame_head(cfg.head, upstream.dim, len(phones), cfg.head_hidden, cfg.head_layers,
                                     cfg.dropout)

    def frame_logits(self, batch: AudioBatch) -> tuple[Tensor, Tensor]:
        """``(B, F, C)`` logits and ``(B, F)`` targets (``IGNORE`` on padding and unaligned frames)."""
        features, lengths = self.represent(batch)
        targets = align_targets(batch.labels["align"], batch.ids, lengths,
                                FrameGrid.of(self.encoder, batch.sample_rate), self.index).to(features.device)
        return self.head(features, lengths), targets

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        logits, targets = self.frame_logits(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        correct, total = frame_hits(logits, targets)
        return ObjectiveOutput(loss, {"acc": correct / max(total, 1)})


def frame_hits(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    """Correct and scored frames (targets other than ``IGNORE``)."""
    scored = targets != IGNORE
    correct = (logits.argmax(dim=-1) == targets) & scored
    return int(correct.sum()), int(scored.sum())


def align_targets(lines: list[str], ids: list[str], frames: Tensor, grid: FrameGrid,
                  index: dict[str, int]) -> Tensor:
    """``(B, max frames)`` phone index per frame: the segment that contains the frame's receptive-field centre."""
    targets = torch.full((len(lines), int(frames.max()) if len(frames) else 0), IGNORE, dtype=torch.long)
    for row, (line, utt) in enumerate(zip(lines, ids)):
        targets[row, : int(frames[row])] = frame_phones(line, utt, grid.centres(int(frames[row])), index)
    return targets


def frame_phones(line: str, utt: str, centres: Tensor, index: dict[str, int]) -> Tensor:
    """Phone index at each centre time (seconds) from one ``.align`` line; ``IGNORE`` where no segment is."""
    targets = torch.full((len(centres),), IGNORE, dtype=torch.long)
    for phone, start, end in parse_alignment(line, utt):
        if phone not in index:
            raise ValueError(f"{utt}: phone {phone!r} of the alignment is not in the phone inventory")
        targets[(centres >= start) & (centres < end)] = index[phone]
    return targets


class SpeakerTask(DownstreamTask):
    """Speaker ID: mean-pooled frames, linear classifier over the training speakers."""

    def __init__(self, cfg: TaskConfig, upstream: Upstream, speakers: list[str]) -> None:
        super().__init__(cfg, upstream)
        self.speakers = speakers
        self.index = {speaker: i for i, speaker in enumerate(speakers)}
        self.head = PooledClassifier(upstream.dim, len(speakers), cfg.dropout)

    def logits(self, batch: AudioBatch) -> Tensor:
        features, lengths = self.represent(batch)
        return self.head(features, lengths)

    def targets(self, batch: AudioBatch) -> Tensor:
        missing = [s for s in batch.labels["spk"] if s not in self.index]
        if missing:
            raise ValueError(f"speaker {missing[0]!r} was not among the training speakers")
        return torch.tensor([self.index[s] for s in batch.labels["spk"]], device=batch.waveforms.device)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:
        logits, targets = self.logits(batch), self.targets(batch)
        loss = F.cross_entropy(logits, targets)
        return ObjectiveOutput(loss, {"acc": (logits.argmax(-1) == targets).float().mean().item()})


def speaker_holdout(ids: list[str], speakers: list[str], fraction: float) -> tuple[list[int], list[int], list[int]]:
    """Split row indices of one manifest into train / dev / test, per speaker, deterministically.

    Speaker ID needs test utterances from the *training* speakers, so each speaker's utterances are sorted
    by id and, with ``k = round(1 / fraction)``, the k-th of every k goes to test and the (k-1)-th to dev.
    Sorting makes the split independent of manifest order, and every speaker with at least k utterances
    appears in all three parts.
    """
    by_speaker: dict[str, list[int]] = {}
    for row, speaker in enumerate(speakers):
        by_speaker.setdefault(speaker, []).append(row)
    k = max(3, round(1 / fraction))
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for rows in by_speaker.values():
        for position, row in enumerate(sorted(rows, key=lambda r: ids[r])):
            part = {k - 1: 2, k - 2: 1}.get(position % k, 0)
            parts[part].append(row)
    return sorted(parts[0]), sorted(parts[1]), sorted(parts[2])


def class_names(lines: Iterable[str]) -> list[str]:
    """Sorted distinct labels: a stable class order whatever the manifest order."""
    return sorted(set(lines))


@dataclass
class Prediction:
    """One utterance's reference and hypothesis as text (words, phones, frame phones or a speaker)."""

    id: str
    reference: str
    hypothesis: str
    seconds: float
    speaker: str = ""


Decoder = Callable[[Tensor, Tensor], list[str]]
ARGMAX = "argmax"
"""The one "decoder" of classification tasks (speaker, frame phones)."""


def predict(task: DownstreamTask, batch: AudioBatch, decoders: Mapping[str, Decoder] | None = None
            ) -> dict[str, list[Prediction]]:
    """Predictions for one batch per decoder name; CTC tasks run the network once for all decoders.

    ``decoders`` (CTC only) defaults to greedy decoding; classification tasks answer under ``argmax``.
    """
    if isinstance(task, CTCTask):
        log_probs, lengths = task.log_probs(batch)
        references = [task.reference(batch, i) for i in range(batch.size)]
        decoders = decoders or {"greedy": GreedyDecoder(task.vocab)}
        return {name: _predictions(batch, list(zip(references, decode(log_probs, lengths))))
                for name, decode in decoders.items()}
    if isinstance(task, FramePhoneTask):
        logits, targets = task.frame_logits(batch)
        pairs = [_frame_strings(task.phones, row_logits, row_targets) for row_logits, row_targets in zip(logits, targets)]
    elif isinstance(task, SpeakerTask):
        best = task.logits(batch).argmax(dim=-1).tolist()
        pairs = [(speaker, task.speakers[b]) for speaker, b in zip(batch.labels["spk"], best)]
    else:
        raise TypeError(f"no predictions for {type(task).__name__}")
    return {ARGMAX: _predictions(batch, pairs)}


def _predictions(batch: AudioBatch, pairs: list[tuple[str, str]]) -> list[Prediction]:
    seconds = (batch.lengths.float() / batch.sample_rate).tolist()
    speakers = batch.labels.get("spk") or [Path(utt).name.split("-")[0] for utt in batch.ids]  # LibriSpeech names
    return [Prediction(utt, ref, hyp, sec, spk)
            for utt, (ref, hyp), sec, spk in zip(batch.ids, pairs, seconds, speakers)]


def _frame_strings(phones: list[str], logits: Tensor, targets: Tensor) -> tuple[str, str]:
    scored = targets != IGNORE
    reference = " ".join(phones[i] for i in targets[scored].tolist())
    hypothesis = " ".join(phones[i] for i in logits.argmax(dim=-1)[scored].tolist())
    return reference, hypothesis


def predict_all(task: DownstreamTask, batches: Iterable[AudioBatch], decoders: Mapping[str, Decoder] | None = None,
                device: torch.device | str = "cpu") -> dict[str, list[Prediction]]:
    """Predictions over a whole split in eval mode (no masking, no dropout); train mode is restored after."""
    was_training = task.training
    task.eval()
    collected: dict[str, list[Prediction]] = {}
    with torch.no_grad():
        for batch in batches:
            for name, predictions in predict(task, batch.to(device), decoders).items():
                collected.setdefault(name, []).extend(predictions)
    task.train(was_training)
    return collected


def score(task_name: str, predictions: list[Prediction]) -> dict[str, float | int]:
    """The task's metrics (``metrics.py`` computes every number): WER/CER, PER or accuracy."""
    refs = [p.reference for p in predictions]
    hyps = [p.hypothesis for p in predictions]
    return SCORERS[task_name](refs, hyps)


SCORERS = {"asr": metrics.wer_cer, "phoneme": metrics.phone_error_rate, "phone_frames": metrics.frame_accuracy,
           "speaker": metrics.accuracy}


@dataclass
class TaskOutputs:
    """What defines a task's output layer, saved with the run so evaluation rebuilds the identical head.

    ``symbols``: CTC vocabulary without blank, frame phone classes, or speaker names, in output order.
    """

    symbols: list[str]


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
    from audiossl.config import to_config
    from audiossl.training.checkpoint import load_checkpoint

    checkpoint_path = resolve_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint.get("config") or {}
    saved = config.get("downstream")
    if saved is None:
        raise ValueError(f"{checkpoint_path} is not a fine-tuning checkpoint (no config.downstream); "
                         "pretraining checkpoints are evaluated after audiossl-finetune")
    upstream = rebuild_upstream(UpstreamSpec(**saved["upstream"]))
    task = build_task(to_config(TaskConfig, config["task"], "task"), upstream, TaskOutputs(**saved["outputs"]))
    task.load_state_dict(checkpoint["model"])
    return task.eval(), config, checkpoint_path
