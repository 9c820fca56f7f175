"""Pseudo-labels for self-training: a fine-tuned CTC model transcribes unlabeled audio, and those transcripts
join the real labels as the training split of a fresh fine-tuning run from the same pretrained encoder.

Why: pre-training and self-training are complementary (Xu et al. 2021, "Self-training and pre-training are
complementary for speech recognition"): with 10 minutes of labels the frozen encoder's head has seen 190
utterances, and an hour of its own LM-decoded transcripts is the cheapest way to show it more. The LM that
decodes them must not have seen the unlabeled audio's own text, or the labels are better than any real
setting could make them (``cli/pseudolabel.py`` refuses an LM split that shares audio with the unlabeled one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from audiossl.data.batch import AudioBatch
from audiossl.data.manifest import Manifest, letters_to_words, words_to_letters, write_manifest
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.predict import Decoder


def transcribe_batches(task: CTCTask, batches: Iterable[AudioBatch], decode: Decoder,
                       device: torch.device | str = "cpu") -> dict[str, str]:
    """Manifest path -> decoded words for every utterance the batches hold (eval mode: no masking, dropout)."""
    was_training = task.training
    task.eval()
    words: dict[str, str] = {}
    with torch.no_grad():
        for batch in batches:
            log_probs, lengths = task.log_probs(batch.to(device))
            words.update(zip(batch.ids, decode(log_probs, lengths)))
    task.train(was_training)
    return words


def unlabeled_pool(unlabeled: Manifest, known: Iterable[Manifest]) -> Manifest:
    """The rows of ``unlabeled`` (with their label lines) whose audio file none of the ``known`` manifests holds:
    the labels' own audio, and audio whose text built the LM, never become pseudo-labels. Files are compared by
    absolute path, so manifests with different root lines compare correctly."""
    taken = {_absolute(manifest, row.relpath) for manifest in known for row in manifest.rows}
    keep = [index for index, row in enumerate(unlabeled.rows) if _absolute(unlabeled, row.relpath) not in taken]
    return Manifest(unlabeled.root, [unlabeled.rows[i] for i in keep],
                    {kind: [lines[i] for i in keep] for kind, lines in unlabeled.labels.items()})


def _absolute(manifest: Manifest, relpath: str) -> str:
    return os.path.normpath(os.path.join(os.path.abspath(manifest.root), relpath))


@dataclass(frozen=True)
class SelfTrainingSplit:
    """What ``write_self_training_split`` wrote: the tsv and how many rows came from where."""

    tsv: Path
    labeled: int
    pseudo_labeled: int
    left_out: int  # unlabeled rows with no transcript: unreadable audio, or an empty hypothesis


def write_self_training_split(manifest_dir: Path, split: str, labeled: Manifest, unlabeled: Manifest,
                              hypotheses: Mapping[str, str]) -> SelfTrainingSplit:
    """``{split}.tsv/.ltr/.wrd``: every labeled row with its real label, then every unlabeled row with a
    non-empty hypothesis, under the labeled manifest's root line (unlabeled paths re-expressed against it)."""
    root = os.path.abspath(labeled.root)
    rows = list(labeled.rows)
    letters = list(labeled.labels["ltr"])
    words = [letters_to_words(line.split()) for line in letters]
    left_out = 0
    for row in unlabeled.rows:
        hypothesis = hypotheses.get(row.relpath, "").strip()
        if not hypothesis:
            left_out += 1
            continue
        rows.append(replace(row, relpath=os.path.relpath(_absolute(unlabeled, row.relpath), root)))
        letters.append(words_to_letters(hypothesis))
        words.append(hypothesis)
    tsv = write_manifest(manifest_dir, split, labeled.root, rows, {"ltr": letters, "wrd": words})
    return SelfTrainingSplit(tsv, len(labeled.rows), len(rows) - len(labeled.rows), left_out)
