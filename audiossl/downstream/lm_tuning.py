"""Choose the LM weight and word score of CTC beam search on a dev split, as fairseq users do before testing.

The two knobs trade the acoustic model against the n-gram: how strongly a model should trust the LM depends
on how sharp its own posteriors are, so values tuned for one model (fairseq's 2 / -1 for BASE + the
LibriSpeech 4-gram) are wrong for another. The acoustic model runs once over the dev split; every grid
point then only re-runs the beam search over the same posteriors.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from audiossl.data.batch import AudioBatch
from audiossl.asr.decode import BeamSettings
from audiossl.metrics import wer_cer
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.predict import Decoder, predict_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TunedPoint:
    """One grid point and the dev WER / CER it gave."""

    lm_weight: float
    word_score: float
    wer: float
    cer: float


@dataclass(frozen=True)
class LMTuning:
    """The chosen settings and every point tried (for the report)."""

    split: str
    best: TunedPoint
    points: list[TunedPoint]

    def describe(self) -> str:
        return (f"lm_weight {self.best.lm_weight:g}, word_score {self.best.word_score:g} "
                f"(dev WER {100 * self.best.wer:.1f} % on {self.split}, best of {len(self.points)} settings)")


def tune_beam(task: CTCTask, batches: Iterable[AudioBatch], split: str, base: BeamSettings,
              make_decoder: Callable[[BeamSettings], Decoder], lm_weights: Sequence[float],
              word_scores: Sequence[float], device: str = "cpu") -> LMTuning:
    """Grid-search ``lm_weight`` x ``word_score`` by dev WER (CER breaks ties); ``base`` gives the other knobs."""
    if not lm_weights or not word_scores:
        raise ValueError("LM tuning needs at least one lm_weight and one word_score")
    grid = {f"{w:g}/{s:g}": replace(base, lm_weight=float(w), word_score=float(s))
            for w, s in itertools.product(lm_weights, word_scores)}
    decoders = {key: make_decoder(settings) for key, settings in grid.items()}
    predictions = predict_all(task, batches, decoders, device=device)
    points = []
    for key, settings in grid.items():
        scores = wer_cer([p.reference for p in predictions[key]], [p.hypothesis for p in predictions[key]])
        points.append(TunedPoint(settings.lm_weight, settings.word_score, float(scores["wer"]), float(scores["cer"])))
    best = min(points, key=lambda p: (p.wer, p.cer))
    log.info("LM tuned on %s: lm_weight %g, word_score %g, WER %.4f", split, best.lm_weight, best.word_score, best.wer)
    return LMTuning(split, best, points)
