"""CTC output vocabularies read from fairseq ``dict.*.txt`` files.

Index 0 is always the CTC blank (``<blank>``) and the dictionary's symbols follow in file order, so a
checkpoint's output layer, the loss (``blank=0``) and every decoder agree on one numbering without
extra bookkeeping. fairseq dictionaries prepend ``<s> <pad> </s> <unk>``; we do not, because a CTC
head has no use for them and every unused output only dilutes the softmax.

A *letter* vocabulary contains the word separator ``|`` (fairseq ``.ltr`` labels such as
``H E L L O | W O R L D |``); any other vocabulary (``.phn`` ARPAbet phones) is a plain token list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import final

import torch
from torch import Tensor

from audiossl.data.manifest import WORD_SEPARATOR, letters_to_words, words_to_letters

BLANK = "<blank>"
UNK = "<unk>"


class VocabularyError(ValueError):
    """A dictionary file or a label line does not fit the vocabulary; the message says where."""


@final
class Vocabulary:
    """Maps CTC output indices to symbols and label lines to index lists.

    ``unk`` picks the policy for symbols missing from the dictionary: ``None`` (default) raises a
    ``VocabularyError`` naming the symbol and the line, because a silently mapped unknown letter in a
    training label is almost always a manifest bug; pass ``"<unk>"`` to append that symbol and map
    unknowns to it instead (useful when scoring foreign transcripts).
    """

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        blank: str = BLANK,
        unk: str | None = None,
        word_separator: str = WORD_SEPARATOR,
    ) -> None:
        symbols = list(symbols)
        if unk is not None and unk not in symbols:
            symbols.append(unk)
        self.blank = blank
        self.unk = unk
        self.word_separator = word_separator
        self.symbols: list[str] = [blank, *symbols]
        self._index: dict[str, int] = {}
        for position, symbol in enumerate(self.symbols):
            _check_symbol(symbol, position, self._index)
            self._index[symbol] = position

    @classmethod
    def from_symbols(cls, symbols: Iterable[str], **kwargs: str | None) -> Vocabulary:
        """Build from a symbol list (blank is added at index 0; do not include it)."""
        return cls(list(symbols), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_dict_file(cls, path: str | Path, **kwargs: str | None) -> Vocabulary:
        """Read a fairseq dictionary (``symbol count`` per line; counts are ignored, order is kept)."""
        return cls(read_dict_file(path), **kwargs)  # type: ignore[arg-type]

    @property
    def blank_index(self) -> int:
        return 0

    @property
    def is_letters(self) -> bool:
        """True for letter vocabularies (they contain the word separator), whose output reads as words."""
        return self.word_separator in self._index

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._index

    def __repr__(self) -> str:
        preview = " ".join(self.symbols[1:11]) + (" ..." if len(self) > 11 else "")
        return f"Vocabulary(size={len(self)}, blank={self.blank!r}, symbols=[{preview}])"

    def index(self, symbol: str, where: str = "") -> int:
        """Index of ``symbol``; unknown symbols follow the ``unk`` policy (see the class docstring)."""
        found = self._index.get(symbol)
        if found is not None:
            return found
        if self.unk is not None:
            return self._index[self.unk]
        place = f" in {where}" if where else ""
        raise VocabularyError(f"unknown symbol {symbol!r}{place}; the vocabulary has {self.symbols[1:]}")

    def encode(self, label_line: str, where: str = "") -> list[int]:
        """Turn a label line (tokens separated by spaces) into indices; ``where`` names it in errors."""
        return [self.index(token, where) for token in label_line.split()]

    def encode_batch(self, label_lines: Sequence[str], ids: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
        """Encode a batch for ``torch.nn.functional.ctc_loss``: ``(B, L)`` zero-padded targets and lengths."""
        encoded = [self.encode(line, ids[i] if ids else f"label line {i}") for i, line in enumerate(label_lines)]
        lengths = torch.tensor([len(seq) for seq in encoded], dtype=torch.long)
        targets = torch.zeros(len(encoded), max((len(seq) for seq in encoded), default=0), dtype=torch.long)
        for row, seq in enumerate(encoded):
            targets[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return targets, lengths

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Indices to symbols (no CTC collapsing here; see ``decode.greedy_ctc``)."""
        return [self.symbols[int(i)] for i in ids]

    def to_text(self, tokens: Sequence[str]) -> str:
        """Readable text for decoded tokens: words for letter vocabularies, space-joined tokens otherwise."""
        if self.is_letters:
            return letters_to_words(tokens, self.word_separator)
        return " ".join(token for token in tokens if token != self.blank)


def _check_symbol(symbol: str, position: int, seen: dict[str, int]) -> None:
    if not symbol or any(ch.isspace() for ch in symbol):
        raise VocabularyError(f"symbol {symbol!r} at index {position} is empty or contains whitespace")
    if symbol in seen:
        raise VocabularyError(f"symbol {symbol!r} appears twice (indices {seen[symbol]} and {position})")


def read_dict_file(path: str | Path) -> list[str]:
    """Symbols of a fairseq dictionary, in file order; bad lines raise an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise VocabularyError(f"dictionary file {path} does not exist")
    symbols: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 3 or (len(fields) >= 2 and not fields[1].lstrip("-").isdigit()):
            raise VocabularyError(f"{path}:{number}: expected 'symbol count', got {line!r}")
        if fields[0] in symbols:
            raise VocabularyError(f"{path}:{number}: symbol {fields[0]!r} appears twice")
        symbols.append(fields[0])
    if not symbols:
        raise VocabularyError(f"dictionary file {path} holds no symbols")
    return symbols


__all__ = ["BLANK", "UNK", "WORD_SEPARATOR", "Vocabulary", "VocabularyError", "letters_to_words", "read_dict_file",
           "words_to_letters"]
