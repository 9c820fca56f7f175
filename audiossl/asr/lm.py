"""Build an ARPA n-gram LM (interpolated modified Kneser-Ney) from training transcripts.

Why our own builder: KenLM's ``lmplz`` is a C++ binary that is not on PyPI, and the LM a few-label
experiment needs is small (the embedded corpus's ``.wrd`` lines, or any list of sentences), so plain
Python counting is quick enough. For LibriSpeech-scale text, bring the published 4-gram ARPA instead;
``decode.LMBeamDecoder`` reads either.

Smoothing follows Chen & Goodman (1998) as KenLM implements it:

* the highest order uses raw counts; lower orders use *continuation* counts (the number of distinct
  words seen before the n-gram), except n-grams that begin with ``<s>``, which keep raw counts
  because nothing can precede ``<s>``;
* three discounts per order, ``D_k = k - (k+1) Y t_{k+1} / t_k`` with ``Y = t_1 / (t_1 + 2 t_2)``, from
  the counts-of-counts ``t_k`` of that order; when a tiny corpus makes them undefined or out of range
  the order falls back to ``(0.5, 1.0, 1.5)`` (lmplz's ``--discount_fallback``), reported in the stats;
* every order interpolates with the next lower one; unigrams interpolate with the uniform distribution
  over the vocabulary (the words, ``</s>`` and ``<unk>``; ``<s>`` is never predicted and gets -99).

In ARPA terms the written probability of a listed n-gram is the interpolated one and the backoff weight
of a context is its interpolation weight ``gamma``, so for every context the probabilities over the
vocabulary sum to one, which is what ``kenlm`` (and flashlight through it) assume.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
LOG10_ZERO = -99.0

Gram = tuple[str, ...]


@dataclass
class ArpaStats:
    """What ``build_arpa`` wrote: sizes per order and the discounts it used (for logs and reports)."""

    path: Path
    order: int
    sentences: int
    tokens: int
    vocabulary_size: int
    ngrams: dict[int, int] = field(default_factory=dict)
    discounts: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    fallback_orders: list[int] = field(default_factory=list)


def build_arpa(sentences: Iterable[str], out_path: str | Path, order: int = 3) -> ArpaStats:
    """Count n-grams in ``sentences`` (whitespace tokens, used as given) and write an ARPA file.

    Normalise the text the way the decoder's lexicon spells it (the embedded corpus's ``.wrd`` lines
    are already uppercase). Orders 2 to 6 are accepted; 3 (default) or 4 is what ASR decoding uses.
    """
    if not 2 <= order <= 6:
        raise ValueError(f"order must be between 2 and 6, got {order}")
    tokenized = [_tokens(line, number) for number, line in enumerate(sentences, start=1)]
    tokenized = [tokens for tokens in tokenized if tokens]
    if not tokenized:
        raise ValueError("build_arpa needs at least one non-empty sentence")
    counts = _adjusted_counts(_raw_counts(tokenized, order), order)
    vocabulary = sorted({gram[0] for gram in counts[1]} - {BOS} | {EOS, UNK})
    stats = ArpaStats(
        path=Path(out_path),
        order=order,
        sentences=len(tokenized),
        tokens=sum(len(tokens) for tokens in tokenized),
        vocabulary_size=len(vocabulary),
    )
    model = _estimate(counts, vocabulary, order, stats)
    _write_arpa(model, Path(out_path), order)
    stats.ngrams = {n: len(model.prob[n]) for n in range(1, order + 1)}
    return stats


def _tokens(line: str, number: int) -> list[str]:
    tokens = line.split()
    if BOS in tokens or EOS in tokens:
        raise ValueError(f"sentence {number} contains {BOS} or {EOS}; they are added by build_arpa")
    return tokens


def _raw_counts(sentences: list[list[str]], order: int) -> dict[int, Counter[Gram]]:
    """Raw n-gram counts of every order over ``<s> w1 .. wn </s>`` (one ``<s>``, as KenLM pads)."""
    counts: dict[int, Counter[Gram]] = {n: Counter() for n in range(1, order + 1)}
    for tokens in sentences:
        padded = (BOS, *tokens, EOS)
        for n in range(1, order + 1):
            counts[n].update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return counts


def _adjusted_counts(raw: dict[int, Counter[Gram]], order: int) -> dict[int, Counter[Gram]]:
    """Kneser-Ney counts: raw at the top order and for ``<s>``-initial n-grams, continuation elsewhere."""
    adjusted: dict[int, Counter[Gram]] = {order: Counter(raw[order])}
    for n in range(order - 1, 0, -1):
        continuation: Counter[Gram] = Counter(gram[1:] for gram in raw[n + 1])
        adjusted[n] = Counter(
            {gram: (count if gram[0] == BOS else continuation[gram]) for gram, count in raw[n].items()}
        )
    return adjusted


def _discounts(counts: Counter[Gram]) -> tuple[float, float, float] | None:
    """Modified KN discounts D1, D2, D3+ from counts-of-counts; None when the estimate is unusable."""
    of_count = Counter(count for count in counts.values() if count <= 4)
    t1, t2, t3, t4 = (of_count[k] for k in (1, 2, 3, 4))
    if min(t1, t2, t3, t4) == 0:
        return None
    y = t1 / (t1 + 2 * t2)
    found = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < d < k for d, k in zip(found, (1, 2, 3))):
        return None
    return found


@dataclass
class _Model:
    """Interpolated log10 probabilities and log10 backoff weights, per order."""

    prob: dict[int, dict[Gram, float]]
    backoff: dict[int, dict[Gram, float]]


def _estimate(counts: dict[int, Counter[Gram]], vocabulary: list[str], order: int, stats: ArpaStats) -> _Model:
    prob: dict[int, dict[Gram, float]] = {}
    gammas: dict[int, dict[Gram, float]] = {}
    counts[1].pop((BOS,), None)  # <s> is a context only; it must not take unigram mass
    for n in range(1, order + 1):
        discounts = _discounts(counts[n])
        if discounts is None:
            discounts = FALLBACK_DISCOUNTS
            stats.fallback_orders.append(n)
        stats.discounts[n] = discounts
        prob[n], gammas[n] = _order_probabilities(counts[n], discounts, vocabulary, prob.get(n - 1))
    backoff = {n: {ctx: math.log10(g) for ctx, g in gammas[n + 1].items() if g > 0} for n in range(1, order)}
    prob[1][(BOS,)] = LOG10_ZERO
    return _Model(prob=prob, backoff=backoff)


def _order_probabilities(
    counts: Counter[Gram],
    discounts: tuple[float, float, float],
    vocabulary: list[str],
    lower: dict[Gram, float] | None,
) -> tuple[dict[Gram, float], dict[Gram, float]]:
    """Interpolated log10 p(w | context) for every n-gram of one order, and gamma per context.

    ``p = max(c - D(c), 0) / total(context) + gamma(context) * p_lower(w | shorter context)``; at the
    unigram order ``p_lower`` is uniform, so unseen vocabulary words (``<unk>``) get the leftover mass.
    """
    totals: dict[Gram, float] = defaultdict(float)
    discount_mass: dict[Gram, float] = defaultdict(float)
    for gram, count in counts.items():
        totals[gram[:-1]] += count
        discount_mass[gram[:-1]] += _discount(count, discounts)
    gammas = {context: discount_mass[context] / total for context, total in totals.items()}
    grams = list(counts) if lower is not None else [(word,) for word in vocabulary]
    probs: dict[Gram, float] = {}
    for gram in grams:
        count, context = counts.get(gram, 0), gram[:-1]
        own = (count - _discount(count, discounts)) / totals[context]
        below = 1.0 / len(vocabulary) if lower is None else 10 ** lower[gram[1:]]
        probs[gram] = math.log10(own + gammas[context] * below)
    return probs, gammas


def _discount(count: int, discounts: tuple[float, float, float]) -> float:
    return 0.0 if count <= 0 else discounts[min(count, 3) - 1]


def _write_arpa(model: _Model, path: Path, order: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write("\\data\\\n")
        for n in range(1, order + 1):
            out.write(f"ngram {n}={len(model.prob[n])}\n")
        for n in range(1, order + 1):
            out.write(f"\n\\{n}-grams:\n")
            backoffs = model.backoff.get(n, {})
            for gram in sorted(model.prob[n]):
                line = f"{model.prob[n][gram]:.7f}\t{' '.join(gram)}"
                if gram in backoffs:
                    line += f"\t{backoffs[gram]:.7f}"
                out.write(line + "\n")
        out.write("\n\\end\\\n")


def arpa_vocabulary(path: str | Path) -> list[str]:
    """Words of an ARPA file's unigram section (without ``<s> </s> <unk>``), e.g. to write a lexicon.

    Reads only up to the bigram header, so it is quick even on the 1.4 GB LibriSpeech 4-gram.
    """
    words: list[str] = []
    in_unigrams = False
    with Path(path).open(encoding="utf-8", errors="replace") as arpa:
        for line in arpa:
            stripped = line.strip()
            if stripped == "\\1-grams:":
                in_unigrams = True
            elif stripped.startswith("\\2-grams:") or stripped == "\\end\\":
                break
            elif in_unigrams and stripped:
                word = stripped.split()[1]
                if word not in (BOS, EOS, UNK):
                    words.append(word)
    if not in_unigrams:
        raise ValueError(f"{path} has no \\1-grams: section; is it an ARPA file?")
    return words


def manifest_arpa(manifest_dir: str | Path, text_split: str, order: int, out_dir: str | Path) -> Path:
    """An n-gram over ``{text_split}.wrd`` of a manifest directory, rebuilt only when the transcripts are newer."""
    from audiossl.data.manifest import Manifest

    manifest_dir = Path(manifest_dir)
    text = manifest_dir / f"{text_split}.wrd"
    arpa = Path(out_dir) / f"{text_split}.{order}gram.arpa"
    if arpa.is_file() and arpa.stat().st_mtime >= text.stat().st_mtime:
        return arpa
    sentences = Manifest.load(manifest_dir / f"{text_split}.tsv", labels=["wrd"]).labels["wrd"]
    stats = build_arpa(sentences, arpa, order)
    print(f"built a {order}-gram LM from {stats.sentences} sentences of {text_split}: {arpa}")
    return arpa


def text_arpa(text_path: str | Path, order: int, out_dir: str | Path) -> Path:
    """An n-gram over a plain text file (one sentence per line), rebuilt only when the text is newer."""
    text_path = Path(text_path)
    arpa = Path(out_dir) / f"{text_path.stem}.{order}gram.arpa"
    if arpa.is_file() and arpa.stat().st_mtime >= text_path.stat().st_mtime:
        return arpa
    sentences = [line for line in text_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    stats = build_arpa(sentences, arpa, order)
    print(f"built a {order}-gram LM from {stats.sentences} sentences of {text_path}: {arpa}")
    return arpa

