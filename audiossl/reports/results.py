"""Plain result records (what ``audiossl-evaluate`` produces) and their scoring through ``metrics``.

A ``SystemResult`` is one (system, split, decoder) cell of a comparison: e.g. ("wav2vec2 pretrained",
"dev", "4-gram LM") with one ``UtteranceResult`` per utterance. Reports never compute a number
themselves; they call ``score`` and friends here, which call ``downstream.metrics``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audiossl import metrics
from audiossl.metrics import AlignedUtterance, Metrics


@dataclass(frozen=True)
class TaskScoring:
    """How one task is scored: the metric function, its headline key and which direction is better."""

    metric: metrics.MetricFn
    headline: str
    name: str
    title: str
    reference_unit: str
    lower_is_better: bool
    normalize: Callable[[str], str] | None  # for aligned worst utterances; None: not a sequence task


TASKS: dict[str, TaskScoring] = {
    "asr": TaskScoring(
        metrics.wer_cer, "wer", "WER", "Speech recognition (WER %)", "ref_words", True, metrics.normalize_text
    ),
    "phoneme": TaskScoring(
        metrics.phone_error_rate, "per", "PER", "Phoneme recognition (PER %)", "ref_phones", True,
        metrics.normalize_tokens,
    ),
    "speaker": TaskScoring(
        metrics.accuracy, "accuracy", "Accuracy", "Speaker identification (accuracy %)", "total", False, None
    ),
    "frames": TaskScoring(
        metrics.frame_accuracy, "accuracy", "Accuracy", "Frame phone probe (accuracy %)", "total", False, None
    ),
}


@dataclass
class UtteranceResult:
    """One scored utterance. For ``speaker`` results, reference and hypothesis are speaker ids."""

    id: str
    speaker: str
    reference: str
    hypothesis: str
    seconds: float = 0.0


@dataclass
class SystemResult:
    """All utterances of one split decoded by one system with one decoder, for one task."""

    system: str
    split: str
    decoder: str
    task: str
    utterances: list[UtteranceResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"SystemResult {self.label!r}: task {self.task!r} is not one of {sorted(TASKS)}")

    @property
    def label(self) -> str:
        return f"{self.system} · {self.split} · {self.decoder}"

    @property
    def scoring(self) -> TaskScoring:
        return TASKS[self.task]

    def column(self, name: str) -> list:
        return [getattr(utterance, name) for utterance in self.utterances]


def score(result: SystemResult) -> Metrics:
    """The task's metric over every utterance of the result (pooled)."""
    return result.scoring.metric(result.column("reference"), result.column("hypothesis"))


def headline(result: SystemResult, scores: Metrics | None = None) -> float:
    """The one number of the summary table (WER, PER or accuracy, as a fraction)."""
    return float((scores or score(result))[result.scoring.headline])


def by_speaker(result: SystemResult) -> dict[str, Metrics]:
    """Metrics per speaker, each with an approximate standard error of its headline rate."""
    groups = metrics.by_group(
        result.column("speaker"), result.column("reference"), result.column("hypothesis"), result.scoring.metric
    )
    for values in groups.values():
        values["stderr"] = rate_stderr(values[result.scoring.headline], values[result.scoring.reference_unit])
    return groups


def rate_stderr(rate: float, trials: float) -> float:
    """Binomial standard error ``sqrt(p (1 - p) / n)``; error rates above 1 (insertions) are clipped."""
    if not trials or math.isnan(rate):
        return math.nan
    p = min(max(rate, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / trials)


def length_bins(results: Sequence[SystemResult], count: int = 5) -> Callable[[UtteranceResult], str]:
    """A function naming each utterance's length bin, with edges shared by all ``results``.

    Bins are quantiles of duration (seconds) so each holds about as many utterances; when durations are
    missing (0) the number of reference words is used instead. Sharing edges keeps systems comparable.
    """
    utterances = {u.id: u for result in results for u in result.utterances}.values()  # each utterance once
    use_seconds = bool(utterances) and all(u.seconds > 0 for u in utterances)

    def size(u: UtteranceResult) -> float:
        return u.seconds if use_seconds else float(len(u.reference.split()))

    values = sorted(size(u) for u in utterances)
    count = max(1, min(count, len(values) // 2))  # at least two utterances per bin on average
    edges = sorted({values[(i * len(values)) // count] for i in range(1, count)})
    unit = "s" if use_seconds else "words"

    def name(u: UtteranceResult) -> str:
        index = sum(size(u) >= edge for edge in edges)
        low = values[0] if index == 0 else edges[index - 1]
        high = values[-1] if index == len(edges) else edges[index]
        return f"{index}: {low:.3g}-{high:.3g} {unit}"

    return name


def by_length(result: SystemResult, bin_of: Callable[[UtteranceResult], str]) -> dict[str, Metrics]:
    """Pooled metrics per length bin (see ``length_bins``)."""
    groups = [bin_of(u) for u in result.utterances]
    return metrics.by_group(groups, result.column("reference"), result.column("hypothesis"), result.scoring.metric)


def worst(result: SystemResult, n: int = 5) -> list[AlignedUtterance]:
    """The ``n`` worst utterances aligned word (or phone) by word; empty for classification tasks."""
    if result.scoring.normalize is None:
        return []
    return metrics.worst_utterances(
        result.column("id"), result.column("reference"), result.column("hypothesis"), n, result.scoring.normalize
    )


def save_results(path: str | Path, results: Sequence[SystemResult]) -> Path:
    """Write results (every utterance's hypothesis) as JSON, so a report can be rebuilt without decoding."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in results], indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def load_results(path: str | Path) -> list[SystemResult]:
    """Read ``save_results`` output; a malformed entry raises naming the file and the entry."""
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    results = []
    for index, entry in enumerate(entries):
        try:
            utterances = [UtteranceResult(**u) for u in entry.pop("utterances")]
            results.append(SystemResult(**entry, utterances=utterances))
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: result entry {index} is malformed: {error}") from None
    return results
