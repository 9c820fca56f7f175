"""Word start/end times from a CTC alignment.

Whatever decoder produced a transcript (greedy or LM beam search), its words are placed in time by forced
alignment: the best CTC path through the frame log-probabilities that emits exactly the transcript's tokens
(Viterbi over the usual blank-interleaved states). A word spans from the first frame of its first token to
the last frame of its last token; a frame covers ``stride`` samples around its receptive-field centre
(``FrameGrid``), so times are accurate to about one frame (20 ms for wav2vec 2.0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from audiossl.features.frozen import FrameGrid
from audiossl.asr.vocab import Vocabulary


@dataclass
class WordTiming:
    word: str
    start: float
    end: float


def ctc_align(log_probs: np.ndarray, targets: list[int], blank: int = 0) -> list[tuple[int, int]] | None:
    """Frame span ``[start, end)`` of each target token on the best CTC path emitting exactly ``targets``.

    ``log_probs`` is ``(frames, vocab)``. None when there are too few frames (each token needs one, and a
    repeated token needs a blank between its copies).
    """
    frames, count = log_probs.shape[0], len(targets)
    repeats = sum(a == b for a, b in zip(targets, targets[1:]))
    if count == 0 or frames < count + repeats:
        return [] if count == 0 else None
    states = np.full(2 * count + 1, blank, dtype=np.int64)
    states[1::2] = targets
    scores = log_probs[:, states]  # (frames, states)
    skip_ok = np.zeros(len(states), dtype=bool)
    skip_ok[3::2] = states[3::2] != states[1:-2:2]  # into token s from token s-2: only if they differ
    alpha = np.full(len(states), -np.inf)
    alpha[:2] = scores[0, :2]
    moves = np.zeros((frames, len(states)), dtype=np.int8)
    for t in range(1, frames):
        step = np.concatenate(([-np.inf], alpha[:-1]))
        skip = np.where(skip_ok, np.concatenate(([-np.inf, -np.inf], alpha[:-2])), -np.inf)
        candidates = np.stack([alpha, step, skip])
        moves[t] = candidates.argmax(0)
        alpha = candidates.max(0) + scores[t]
    state = len(states) - 1 if alpha[-1] >= alpha[-2] else len(states) - 2
    spans: dict[int, list[int]] = {}
    for t in range(frames - 1, -1, -1):
        if state % 2:
            spans.setdefault(state // 2, []).append(t)
        state -= int(moves[t, state])
    return [(min(spans[i]), max(spans[i]) + 1) for i in range(count)]


def spell(word: str, vocab: Vocabulary) -> list[str] | None:
    """A word as vocabulary symbols, longest match first (so ``<unk>`` is one symbol, not five letters);
    None when some part of it is no symbol."""
    longest = max(len(symbol) for symbol in vocab.symbols)
    tokens, position = [], 0
    while position < len(word):
        found = next((word[position:end] for end in range(min(len(word), position + longest), position, -1)
                      if word[position:end] in vocab and word[position:end] != vocab.blank), None)
        if found is None:
            return None
        tokens.append(found)
        position += len(found)
    return tokens


def _word_tokens(text: str, vocab: Vocabulary) -> list[tuple[str, list[str] | None]]:
    """Each word with the tokens the model emits for it: its spelling (words joined by the separator) or,
    for token vocabularies such as phones, the token itself."""
    if vocab.is_letters:
        return [(word, spell(word, vocab)) for word in text.split()]
    return [(token, [token]) for token in text.split()]


def word_timings(text: str, log_probs: Tensor, vocab: Vocabulary, grid: FrameGrid) -> list[WordTiming] | None:
    """Start/end seconds of each word of ``text`` in one utterance's ``(frames, vocab)`` log-probabilities.

    None when the text holds a symbol the vocabulary lacks or the utterance is too short to align it.
    """
    words = _word_tokens(text, vocab)
    tokens: list[str] = []
    ranges = []
    for number, (_, spelling) in enumerate(words):
        if spelling is None or any(token not in vocab for token in spelling):
            return None
        if number and vocab.is_letters:
            tokens.append(vocab.word_separator)
        ranges.append((len(tokens), len(tokens) + len(spelling)))
        tokens += spelling
    spans = ctc_align(log_probs.detach().float().cpu().numpy(), [vocab.index(t) for t in tokens], vocab.blank_index)
    if spans is None:
        return None
    centres = grid.centres(log_probs.shape[0]).tolist()
    half = grid.stride / 2 / grid.sample_rate
    return [WordTiming(word, round(max(centres[spans[first][0]] - half, 0.0), 3),
                       round(centres[spans[last - 1][1] - 1] + half, 3))
            for (word, _), (first, last) in zip(words, ranges)]
