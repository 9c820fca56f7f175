"""What every downstream task shares: its config, the upstream -> layer reader -> masking -> head path,
the wav2vec 2.0 freezing schedule and the frozen-feature cache.

A task is an ``Objective``, so the pretraining ``Trainer`` runs it unchanged. One file per task, like
``objectives/``: ``ctc.py`` (ASR over letters, phoneme recognition), ``frame_phones.py`` (the CPC paper's
frame phone probe), ``speaker.py`` (utterance-level speaker ID). ``finetuned.py`` builds them and reads them
back from checkpoints, ``predict.py`` turns them into scored predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from typing_extensions import override

from audiossl.audio.features import utterance_cmvn
from audiossl.config import ConfigError, check_choice
from audiossl.data.batch import AudioBatch
from audiossl.downstream.heads import FrameMasker, LastLayer, WeightedLayerSum
from audiossl.features.upstream import EncoderUpstream, Upstream, part_of
from audiossl.models.output import EncoderOutput
from audiossl.objectives.base import Objective

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
    weighted sum of all layers, ``head``), ``finetune`` (context network trained after
    ``freeze_context_updates`` updates; the feature encoder stays frozen unless ``train_feature_encoder``).
    ``train_feature_encoder``: ``finetune`` only: the conv stack trains too, thawing with the context network.
    fairseq and HF freeze it when fine-tuning a pretrained model; training a randomly initialised encoder end
    to end on labels (the bench's supervised ceiling, ``conf/recipe/phone_ceiling.yaml``) needs it.
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
    train_feature_encoder: bool = False

    def validate(self, key: str = "task") -> TaskConfig:
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
        if self.train_feature_encoder and self.mode != "finetune":
            raise ConfigError(f"invalid config at '{key}.train_feature_encoder': only mode=finetune trains the "
                              f"upstream, got mode={self.mode}")
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
        self.encoder.set_trainable(feature_encoder=wanted and self.cfg.train_feature_encoder, context=wanted,
                                   may_thaw=self.thawing_parts)
        self.context_trainable = wanted
        return wanted

    @property
    def thawing_parts(self) -> tuple[str, ...]:
        """The upstream parts this task's schedule may train (``EncoderUpstream.set_trainable``'s names)."""
        if self.cfg.mode != "finetune":
            return ()
        return ("feature_encoder", "context") if self.cfg.train_feature_encoder else ("context",)

    def parameter_groups(self, lr: float, encoder_lr_scale: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: the head at ``lr``; the context network (``finetune`` only) at a scaled lr.

        The feature encoder is handed to the optimizer only with ``train_feature_encoder`` (at the context
        network's lr). The context network is, from the start, even
        while frozen: it gets no gradient until unfrozen (AdamW skips it), and the optimizer state has the
        same shape before and after, so resuming works at any step. Weight decay skips biases and norms.
        """
        upstream = {id(p) for p in self.encoder.parameters()}
        head = [p for p in self.parameters() if id(p) not in upstream]
        groups = _decay_groups(head, lr, weight_decay)
        if self.cfg.mode == "finetune":
            trained = [p for name, p in self.encoder.named_parameters()
                       if part_of(name) in self.thawing_parts]
            groups += _decay_groups(trained, lr * encoder_lr_scale, weight_decay)
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



def class_names(lines: Iterable[str]) -> list[str]:
    """Sorted distinct labels: a stable class order whatever the manifest order."""
    return sorted(set(lines))
