"""Predictions of any task as text pairs (reference, hypothesis), and their scores (``metrics.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor

from audiossl import metrics
from audiossl.asr.decode import GreedyDecoder
from audiossl.data.batch import AudioBatch
from audiossl.downstream.base import IGNORE, DownstreamTask
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.frame_phones import FramePhoneTask
from audiossl.downstream.speaker import SpeakerTask


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
        pairs = [_frame_strings(task.phones, row_logits, row_targets)
                 for row_logits, row_targets in zip(logits, targets)]
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


