"""Every number in an audiossl report comes from here: WER/CER, PER, accuracy, breakdowns, alignments.

Text normalisation (applied to references and hypotheses alike before WER and CER)
-----------------------------------------------------------------------------------
1. Unicode NFKC, then uppercase (LibriSpeech transcripts and our ``.wrd`` files are uppercase).
2. Every character that is neither a letter, a digit, an apostrophe nor whitespace becomes a space
   (``"HELLO, WORLD!"`` -> ``HELLO WORLD``; ``DON'T`` keeps its apostrophe, as in LibriSpeech).
3. Whitespace runs collapse to one space; leading and trailing space is dropped.

WER counts word substitutions, deletions and insertions from jiwer's Levenshtein alignment over the
normalised words, divided by the number of reference words, pooled over the whole set (not averaged
per utterance, so long utterances weigh more, as in every published WER). CER is the same over
characters of the normalised text, *including* the spaces between words (jiwer's convention).
PER applies only step 1's uppercase and step 3 to phone strings (``.phn`` tokens, e.g. ARPAbet
``HH AH0 L OW1``) and counts errors over whitespace-separated phones; stress marks are kept, so use an
unstressed phone set if you want the 39-phone convention. Rates are fractions (0.25 = 25 %); reports
print them as percentages. A set with no reference words has rate ``nan``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jiwer

NORMALIZATION = (
    "uppercase (after Unicode NFKC); every character other than letters, digits, apostrophes and "
    "whitespace becomes a space; whitespace collapsed. WER/CER are pooled over the set (errors / reference "
    "words or characters); CER counts the spaces between words. PER: uppercase, whitespace collapsed, "
    "errors over whitespace-separated phones."
)

_PUNCTUATION = re.compile(r"[^\w'\s]|_")

Metrics = dict[str, float | int]
MetricFn = Callable[[Sequence[str], Sequence[str]], Metrics]


def normalize_text(text: str) -> str:
    """The one normalisation for word-level scoring (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").upper()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def normalize_tokens(text: str) -> str:
    """Normalisation for token strings such as phones: uppercase and collapsed whitespace only."""
    return " ".join(text.upper().split())


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; they must pair one to one")


def _rate(errors: int, total: int) -> float:
    return errors / total if total else math.nan


def _edit_counts(output: jiwer.WordOutput | jiwer.CharacterOutput, prefix: str) -> Metrics:
    """Error counts and rate from one jiwer result; ``prefix`` names the rate (wer, cer, per)."""
    reference = output.hits + output.substitutions + output.deletions
    errors = output.substitutions + output.deletions + output.insertions
    return {
        prefix: _rate(errors, reference),
        "errors": errors,
        "substitutions": output.substitutions,
        "deletions": output.deletions,
        "insertions": output.insertions,
        "hits": output.hits,
        "reference": reference,
    }


_NO_COUNTS = dict.fromkeys(("errors", "substitutions", "deletions", "insertions", "hits", "reference"), 0)


def _counts(refs: Sequence[str], hyps: Sequence[str], normalize: Callable[[str], str], prefix: str) -> Metrics:
    """Word counts (``prefix`` wer/per) or, for ``cer``, character counts of the normalised pairs."""
    _check_pairs(refs, hyps)
    if not refs:  # an empty set has nothing to count (jiwer would score it as one empty pair)
        return {prefix: math.nan, **_NO_COUNTS}
    process = jiwer.process_characters if prefix == "cer" else jiwer.process_words
    return _edit_counts(process([normalize(r) for r in refs], [normalize(h) for h in hyps]), prefix)


def wer_cer(refs: Sequence[str], hyps: Sequence[str]) -> Metrics:
    """Pooled WER and CER with their counts.

    Keys: ``wer cer substitutions deletions insertions hits ref_words hyp_words errors
    char_errors char_substitutions char_deletions char_insertions ref_chars utterances``.
    """
    words = _counts(refs, hyps, normalize_text, "wer")
    chars = _counts(refs, hyps, normalize_text, "cer")
    return {
        "wer": words["wer"],
        "cer": chars["cer"],
        "substitutions": words["substitutions"],
        "deletions": words["deletions"],
        "insertions": words["insertions"],
        "hits": words["hits"],
        "errors": words["errors"],
        "ref_words": words["reference"],
        "hyp_words": words["hits"] + words["substitutions"] + words["insertions"],
        "char_errors": chars["errors"],
        "char_substitutions": chars["substitutions"],
        "char_deletions": chars["deletions"],
        "char_insertions": chars["insertions"],
        "ref_chars": chars["reference"],
        "utterances": len(refs),
    }


def phone_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> Metrics:
    """Pooled PER over whitespace-separated phones. Keys: ``per substitutions deletions insertions
    hits errors ref_phones utterances``."""
    counts = _counts(refs, hyps, normalize_tokens, "per")
    counts["ref_phones"] = counts.pop("reference")
    counts["utterances"] = len(refs)
    return counts


def accuracy(labels: Sequence[str], predictions: Sequence[str]) -> Metrics:
    """Exact-match accuracy of class labels (speaker ids, keywords). Keys: ``accuracy correct total``."""
    _check_pairs(labels, predictions)
    correct = sum(str(a).strip() == str(b).strip() for a, b in zip(labels, predictions))
    return {"accuracy": _rate(correct, len(labels)), "correct": correct, "total": len(labels)}


def frame_accuracy(refs: Sequence[str], hyps: Sequence[str]) -> Metrics:
    """Position-wise token accuracy of equal-length label strings (frame phone probes, as in CPC).

    Keys: ``accuracy correct total utterances``. Unequal lengths raise, naming the pair's index.
    """
    _check_pairs(refs, hyps)
    correct = total = 0
    for index, (ref, hyp) in enumerate(zip(refs, hyps)):
        ref_tokens, hyp_tokens = ref.split(), hyp.split()
        if len(ref_tokens) != len(hyp_tokens):
            raise ValueError(f"pair {index}: {len(ref_tokens)} reference frames but {len(hyp_tokens)} predicted")
        correct += sum(r == h for r, h in zip(ref_tokens, hyp_tokens))
        total += len(ref_tokens)
    return {"accuracy": _rate(correct, total), "correct": correct, "total": total, "utterances": len(refs)}


def cluster_quality(phones: Sequence[int], clusters: Sequence[int]) -> Metrics:
    """How well frame clusters match phones (HuBERT paper, Sec. IV-B), from paired per-frame ids.

    With the joint distribution ``P(phone, cluster)`` over frames: ``phone_purity`` = sum over clusters of
    the largest ``P(p, c)`` (the accuracy of labelling each cluster with its majority phone),
    ``cluster_purity`` = sum over phones of the largest ``P(p, c)``, and ``pnmi`` = ``I(phone; cluster) /
    H(phone)``, the share of phone uncertainty a cluster id removes. Keys also: ``frames``, ``clusters_used``.
    """
    if len(phones) != len(clusters):
        raise ValueError(f"{len(phones)} phone labels but {len(clusters)} cluster ids")
    if not len(phones):
        return {"phone_purity": math.nan, "cluster_purity": math.nan, "pnmi": math.nan, "frames": 0,
                "clusters_used": 0}
    joint: dict[tuple[int, int], int] = defaultdict(int)
    for pair in zip(phones, clusters):
        joint[pair] += 1
    total = len(phones)
    by_phone: dict[int, int] = defaultdict(int)
    by_cluster: dict[int, int] = defaultdict(int)
    best_phone: dict[int, int] = defaultdict(int)  # cluster -> its largest phone count
    best_cluster: dict[int, int] = defaultdict(int)  # phone -> its largest cluster count
    for (phone, cluster), count in joint.items():
        by_phone[phone] += count
        by_cluster[cluster] += count
        best_phone[cluster] = max(best_phone[cluster], count)
        best_cluster[phone] = max(best_cluster[phone], count)
    mutual = sum(count / total * math.log(count * total / (by_phone[p] * by_cluster[c]))
                 for (p, c), count in joint.items())
    phone_entropy = -sum(n / total * math.log(n / total) for n in by_phone.values())
    return {"phone_purity": sum(best_phone.values()) / total, "cluster_purity": sum(best_cluster.values()) / total,
            "pnmi": mutual / phone_entropy if phone_entropy > 0 else math.nan, "frames": total,
            "clusters_used": len(by_cluster)}


def by_group(
    groups: Sequence[str], refs: Sequence[str], hyps: Sequence[str], metric: MetricFn = wer_cer
) -> dict[str, Metrics]:
    """``metric`` computed separately for each group (speaker, split, length bin), keys sorted."""
    _check_pairs(refs, hyps)
    if len(groups) != len(refs):
        raise ValueError(f"{len(groups)} group labels for {len(refs)} utterances")
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[str(group)].append(index)
    return {group: metric([refs[i] for i in idx], [hyps[i] for i in idx]) for group, idx in sorted(members.items())}


@dataclass
class AlignedUtterance:
    """One utterance's word alignment, printable as three lines of equal width."""

    id: str
    errors: int
    ref_words: int
    reference: str
    hypothesis: str
    marks: str

    @property
    def error_rate(self) -> float:
        return _rate(self.errors, self.ref_words)

    def lines(self) -> str:
        return f"REF: {self.reference}\nHYP: {self.hypothesis}\n     {self.marks}".rstrip()


_MARK = {"equal": " ", "substitute": "S", "delete": "D", "insert": "I"}


def align(ref: str, hyp: str, normalize: Callable[[str], str] = normalize_text) -> tuple[str, str, str, int]:
    """Word alignment of one pair: reference line, hypothesis line (``*`` fills gaps), S/D/I marks, errors."""
    ref_words, hyp_words = normalize(ref).split(), normalize(hyp).split()
    if not ref_words and not hyp_words:
        return "", "", "", 0
    if not ref_words:
        return _columns([("*", word, "I") for word in hyp_words])
    output = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
    columns: list[tuple[str, str, str]] = []
    for chunk in output.alignments[0]:
        refs = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        width = max(len(refs), len(hyps))
        refs += ["*"] * (width - len(refs))
        hyps += ["*"] * (width - len(hyps))
        columns += [(r, h, _MARK[chunk.type]) for r, h in zip(refs, hyps)]
    return _columns(columns)


def _columns(columns: list[tuple[str, str, str]]) -> tuple[str, str, str, int]:
    widths = [max(len(r), len(h)) for r, h, _ in columns]
    ref_line = " ".join(r.ljust(w) for (r, _, _), w in zip(columns, widths)).rstrip()
    hyp_line = " ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths)).rstrip()
    marks = " ".join(m.ljust(w) for (_, _, m), w in zip(columns, widths)).rstrip()
    return ref_line, hyp_line, marks, sum(m != " " for _, _, m in columns)


def worst_utterances(
    ids: Sequence[str],
    refs: Sequence[str],
    hyps: Sequence[str],
    n: int = 10,
    normalize: Callable[[str], str] = normalize_text,
) -> list[AlignedUtterance]:
    """The ``n`` utterances with the most errors (ties: higher error rate, then id), aligned word by word."""
    _check_pairs(refs, hyps)
    aligned = []
    for utt_id, ref, hyp in zip(ids, refs, hyps):
        ref_line, hyp_line, marks, errors = align(ref, hyp, normalize)
        aligned.append(AlignedUtterance(str(utt_id), errors, len(normalize(ref).split()), ref_line, hyp_line, marks))
    aligned.sort(key=lambda u: (-u.errors, -(u.errors / max(u.ref_words, 1)), u.id))
    return [u for u in aligned[:n] if u.errors > 0]
