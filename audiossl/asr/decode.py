"""CTC decoding: greedy (argmax) and beam search with a KenLM n-gram through flashlight.

Both decoders take the CTC head's output as ``log_probs (B, F, V)`` with ``lengths (B,)`` valid
frames and return one string per utterance, ready for ``metrics``: words for letter vocabularies,
space-separated tokens (phones) otherwise.

``LMBeamDecoder`` wraps ``torchaudio.models.decoder.ctc_decoder`` (flashlight-text). With a lexicon it
decodes into words of the lexicon scored by a *word* ARPA (the LibriSpeech 4-gram, or one made by
``lm.build_arpa`` from training transcripts); without a lexicon it is lexicon-free and the ARPA must be
over the vocabulary's *tokens* (a letter n-gram, e.g. ``build_arpa`` over ``.ltr`` lines).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import final

import torch
from torch import Tensor

from audiossl.asr.vocab import UNK, Vocabulary

log = logging.getLogger(__name__)


def _check_log_probs(log_probs: Tensor, lengths: Tensor | None) -> Tensor:
    """Validate shapes and return lengths on CPU (all frames when ``lengths`` is None)."""
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, frames, vocab), got shape {tuple(log_probs.shape)}")
    batch, frames, _ = log_probs.shape
    if lengths is None:
        return torch.full((batch,), frames, dtype=torch.long)
    lengths = lengths.detach().to("cpu", torch.long)
    if lengths.shape != (batch,) or bool((lengths > frames).any()) or bool((lengths < 0).any()):
        raise ValueError(f"lengths {lengths.tolist()} do not fit log_probs of shape {tuple(log_probs.shape)}")
    return lengths


def greedy_ctc(log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, merge repeats, drop blanks (frames past ``lengths`` ignored).

    Repeats are merged *before* blanks are dropped, so ``A <b> A`` stays two ``A`` (a double letter)
    while ``A A`` is one: that is the CTC collapsing rule.
    """
    lengths = _check_log_probs(log_probs, lengths)
    best = log_probs.detach().argmax(dim=-1).cpu()
    sequences: list[list[int]] = []
    for row, length in zip(best, lengths.tolist()):
        path = torch.unique_consecutive(row[:length])
        sequences.append([int(i) for i in path if int(i) != blank])
    return sequences


@final
class GreedyDecoder:
    """Greedy CTC decoding to text; the baseline every LM result is compared against."""

    name = "greedy"

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab

    def decode(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[str]:
        paths = greedy_ctc(log_probs, lengths, blank=self.vocab.blank_index)
        return [self.vocab.to_text(self.vocab.decode(path)) for path in paths]

    __call__ = decode


@dataclass
class BeamSettings:
    """flashlight beam-search knobs.

    ``lm_weight`` and ``word_score`` are the two values worth tuning on dev (fairseq's wav2vec 2.0
    example decodes the LibriSpeech 4-gram with lm weight 2, word score -1, beam 500, threshold 25).
    A larger beam buys accuracy slowly and costs time about linearly; 50 keeps CPU evaluation quick.
    """

    beam_size: int = 50
    beam_size_token: int | None = None
    beam_threshold: float = 25.0
    lm_weight: float = 2.0
    word_score: float = 0.0
    sil_score: float = 0.0
    unk_score: float = float("-inf")


@final
class LMBeamDecoder:
    """CTC beam search with an n-gram LM (KenLM ARPA or binary) and an optional lexicon.

    ``arpa_path=None`` runs the same search without an LM (a lexicon still constrains the words),
    which isolates what the LM adds. The vocabulary must contain ``sil_token`` (the word separator).
    """

    name = "lm"

    def __init__(
        self,
        vocab: Vocabulary,
        arpa_path: str | Path | None,
        lexicon_path: str | Path | None = None,
        settings: BeamSettings | None = None,
        *,
        sil_token: str = "|",
        blank_token: str | None = None,
        unk_word: str = UNK,
    ) -> None:
        from torchaudio.models.decoder import ctc_decoder  # flashlight-text is imported only when needed

        blank_token = blank_token or vocab.blank
        _require_tokens(vocab, sil_token, blank_token)
        for path in (arpa_path, lexicon_path):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"decoder file {path} does not exist")
        if lexicon_path is not None:
            check_lexicon(lexicon_path, vocab)
        settings = settings or BeamSettings()
        self.vocab = vocab
        self.settings = settings
        self.lexicon_free = lexicon_path is None
        with tempfile.TemporaryDirectory() as scratch:
            self._decoder = ctc_decoder(
                lexicon=None if lexicon_path is None else str(lexicon_path),
                tokens=list(vocab.symbols),
                lm=None if arpa_path is None else str(arpa_path),
                lm_dict=_token_lm_dict(vocab, unk_word, scratch) if self.lexicon_free and arpa_path else None,
                nbest=1,
                beam_size=settings.beam_size,
                beam_size_token=settings.beam_size_token,
                beam_threshold=settings.beam_threshold,
                lm_weight=settings.lm_weight,
                word_score=settings.word_score,
                unk_score=settings.unk_score,
                sil_score=settings.sil_score,
                blank_token=blank_token,
                sil_token=sil_token,
                unk_word=unk_word,
            )

    def decode(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[str]:
        """Best hypothesis per utterance, as words (tokens are mapped through the vocabulary)."""
        lengths = _check_log_probs(log_probs, lengths)
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
        results = self._decoder(emissions, lengths.to(torch.int32))
        return [self._text(hypotheses) for hypotheses in results]

    __call__ = decode

    def _text(self, hypotheses: list) -> str:
        if not hypotheses:
            return ""
        best = hypotheses[0]
        if self.lexicon_free:
            return self.vocab.to_text(self.vocab.decode(best.tokens.tolist()))
        return " ".join(word for word in best.words if word)


def _token_lm_dict(vocab: Vocabulary, unk_word: str, directory: str) -> str:
    """Write the LM word list in vocabulary order for lexicon-free decoding.

    Without it torchaudio builds the token-to-LM mapping from an unordered map, so token ``i`` is
    scored as some other token and the LM silently scores the wrong letters (seen with torchaudio 2.9.1).
    """
    path = Path(directory) / "lm_dict.txt"
    entries = [*vocab.symbols, *([unk_word] if unk_word not in vocab else [])]
    path.write_text("\n".join(entries) + "\n", encoding="utf-8")
    return str(path)


def _require_tokens(vocab: Vocabulary, sil_token: str, blank_token: str) -> None:
    missing = [token for token in (sil_token, blank_token) if token not in vocab]
    if missing:
        raise ValueError(
            f"LM beam decoding needs {missing} in the vocabulary (a letter vocabulary with word separator "
            f"'{sil_token}'); got {vocab!r}"
        )


def write_lexicon(
    words: Iterable[str], path: str | Path, separator: str = "|", vocab: Vocabulary | None = None
) -> Path:
    """Write a flashlight lexicon (``WORD<TAB>W O R D |``), one line per distinct word, sorted.

    The spelling ends with the word separator because letter CTC models emit ``|`` after every word
    (fairseq's ``.ltr`` convention), so the decoder's trie must expect it. Given ``vocab``, words with a
    letter the model cannot emit are left out (they could never be decoded anyway); special tokens such
    as ``<unk>`` are always left out.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    distinct = sorted({word for word in words if word and not word.startswith("<")})
    if vocab is not None:
        spellable = [word for word in distinct if all(letter in vocab for letter in word)]
        if len(spellable) < len(distinct):
            dropped = sorted(set(distinct) - set(spellable))
            log.warning("lexicon %s: left out %d of %d words that hold letters the model cannot emit (e.g. %s)",
                        path, len(dropped), len(distinct), ", ".join(dropped[:5]))
        distinct = spellable
    lines = [f"{word}\t{' '.join(word)} {separator}\n" for word in distinct]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def check_lexicon(path: str | Path, vocab: Vocabulary) -> None:
    """Fail early, naming file and line, when a lexicon spelling uses a token the vocabulary lacks.

    flashlight only says ``Unknown entry in dictionary: 'H'``, which does not say where to look.
    """
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        unknown = sorted({token for token in fields[1:] if token not in vocab})
        if len(fields) < 2 or unknown:
            problem = f"tokens {unknown} are not in the vocabulary" if unknown else "no spelling"
            raise ValueError(
                f"{path}:{number}: {problem} (line {line!r}); write it with write_lexicon(..., vocab=vocab)"
            )
