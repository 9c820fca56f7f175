"""Vocabulary, greedy CTC, the ARPA builder (checked through kenlm) and LM beam search."""

from __future__ import annotations

import math
import random

import kenlm
import pytest
import torch

from audiossl.asr.decode import BeamSettings, GreedyDecoder, LMBeamDecoder, greedy_ctc, write_lexicon
from audiossl.asr.lm import arpa_vocabulary, build_arpa
from audiossl.asr.vocab import Vocabulary, VocabularyError, letters_to_words, words_to_letters

LETTERS = Vocabulary.from_symbols(list("|ACRT"))


def emissions(vocab: Vocabulary, frames: list[dict[str, float]]) -> torch.Tensor:
    """(1, F, V) log-probs: each frame puts the given probability on the named symbols, a little elsewhere."""
    probs = torch.full((len(frames), len(vocab)), 1e-4)
    for row, frame in enumerate(frames):
        for symbol, p in frame.items():
            probs[row, vocab.index(symbol)] = p
    return (probs / probs.sum(-1, keepdim=True)).log().unsqueeze(0)


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_reads_fairseq_dict_and_round_trips(tmp_path):
    path = tmp_path / "dict.ltr.txt"
    path.write_text("| 94802\nE 51860\nT 38431\nH 28000\nL 20000\nO 19000\nW 9000\nR 30000\nD 17000\n")
    vocab = Vocabulary.from_dict_file(path)
    assert len(vocab) == 10 and vocab.symbols[0] == "<blank>" and vocab.index("|") == 1
    line = "H E L L O | W O R L D |"
    ids = vocab.encode(line)
    assert 0 not in ids
    assert " ".join(vocab.decode(ids)) == line
    assert vocab.to_text(vocab.decode(ids)) == "HELLO WORLD"
    assert vocab.is_letters


def test_unknown_symbol_is_named_or_mapped_to_unk():
    with pytest.raises(VocabularyError, match=r"'Z' in train.ltr:3"):
        LETTERS.encode("C A Z |", where="train.ltr:3")
    with_unk = Vocabulary.from_symbols(list("|ACRT"), unk="<unk>")
    assert with_unk.decode(with_unk.encode("C A Z |")) == ["C", "A", "<unk>", "|"]


def test_bad_dict_line_names_file_and_line(tmp_path):
    path = tmp_path / "dict.phn.txt"
    path.write_text("AH 10\nAH 3\n")
    with pytest.raises(VocabularyError, match=r"dict.phn.txt:2"):
        Vocabulary.from_dict_file(path)


def test_letters_words_helpers_and_batch_encoding():
    assert letters_to_words("H E L L O | W O R L D |".split()) == "HELLO WORLD"
    assert words_to_letters("HELLO WORLD") == "H E L L O | W O R L D |"
    targets, lengths = LETTERS.encode_batch(["C A T |", "A |"])
    assert lengths.tolist() == [4, 2]
    assert targets.tolist() == [[LETTERS.index(s) for s in "CAT|"], [LETTERS.index("A"), LETTERS.index("|"), 0, 0]]


# ---------------------------------------------------------------- greedy


def test_greedy_collapses_repeats_and_drops_blanks():
    # frames: C C <b> A A <b> <b> T T |  -> C A T |
    frames = [{symbol: 0.9} for symbol in ["C", "C", "<blank>", "A", "A", "<blank>", "T", "|"]]
    log_probs = emissions(LETTERS, frames)
    assert LETTERS.decode(greedy_ctc(log_probs)[0]) == list("CAT|")
    assert GreedyDecoder(LETTERS).decode(log_probs) == ["CAT"]


def test_greedy_keeps_double_letters_split_by_blank_and_respects_lengths():
    frames = [{"A": 0.9}, {"<blank>": 0.9}, {"A": 0.9}, {"|": 0.9}, {"T": 0.9}, {"T": 0.9}]
    log_probs = torch.cat([emissions(LETTERS, frames), emissions(LETTERS, frames)])
    paths = greedy_ctc(log_probs, torch.tensor([6, 3]))
    assert LETTERS.decode(paths[0]) == ["A", "A", "|", "T"]
    assert LETTERS.decode(paths[1]) == ["A", "A"]


def test_greedy_phone_vocabulary_returns_phone_string():
    phones = Vocabulary.from_symbols(["AH", "K", "T"])
    log_probs = emissions(phones, [{"K": 0.9}, {"AH": 0.9}, {"AH": 0.9}, {"<blank>": 0.9}, {"T": 0.9}])
    assert GreedyDecoder(phones).decode(log_probs) == ["K AH T"]


def test_greedy_rejects_lengths_longer_than_frames():
    with pytest.raises(ValueError, match="lengths"):
        greedy_ctc(torch.zeros(1, 3, 4), torch.tensor([5]))


# ---------------------------------------------------------------- ARPA builder


CORPUS = ["THE CAT SAT", "THE CAT RAN", "A CAT SAT ON THE MAT", "THE DOG SAT", "A DOG RAN TO THE CAT"] * 3


def conditional_log10(model: kenlm.Model, context: list[str], word: str) -> float:
    state, out = kenlm.State(), kenlm.State()
    model.BeginSentenceWrite(state)
    for token in context:
        model.BaseScore(state, token, out)
        state, out = out, state
    return model.BaseScore(state, word, out)


@pytest.mark.parametrize("order", [3, 4])
def test_arpa_loads_in_kenlm_and_each_context_sums_to_one(tmp_path, order):
    path = tmp_path / "lm.arpa"
    stats = build_arpa(CORPUS, path, order=order)
    model = kenlm.Model(str(path))
    assert model.order == order
    assert stats.ngrams[1] == len(set(" ".join(CORPUS).split())) + 3  # words + <s> </s> <unk>
    predictable = [*arpa_vocabulary(path), "</s>", "<unk>"]
    for context in ([], ["THE"], ["THE", "CAT"], ["A", "DOG", "RAN"], ["MAT", "MAT"]):
        total = sum(10 ** conditional_log10(model, context, word) for word in predictable)
        assert math.isclose(total, 1.0, abs_tol=1e-4), (context, total)


def test_arpa_prefers_seen_ngrams_and_flags_discount_fallback(tmp_path):
    path = tmp_path / "lm.arpa"
    stats = build_arpa(CORPUS, path, order=3)
    model = kenlm.Model(str(path))
    assert conditional_log10(model, ["THE"], "CAT") > conditional_log10(model, ["THE"], "RAN")
    assert conditional_log10(model, ["THE", "CAT"], "SAT") > conditional_log10(model, ["THE", "CAT"], "TO")
    assert conditional_log10(model, ["THE"], "<unk>") < conditional_log10(model, ["THE"], "TO")
    assert stats.fallback_orders  # a 15-sentence corpus cannot estimate all three discounts
    assert set(stats.discounts) == {1, 2, 3}


def test_arpa_estimates_modified_kn_discounts_on_zipfian_text(tmp_path):
    rng = random.Random(0)
    words = [f"W{i}" for i in range(300)]
    zipf = [1 / (rank + 1) for rank in range(300)]
    sentences = [" ".join(rng.choices(words, zipf, k=rng.randint(4, 10))) for _ in range(1500)]
    path = tmp_path / "zipf.arpa"
    stats = build_arpa(sentences, path, order=3)
    assert stats.fallback_orders == []
    for d1, d2, d3 in stats.discounts.values():
        assert 0 < d1 < 1 < d2 < 2 and d2 <= d3 < 3  # Chen & Goodman's ranges, increasing with the count
    model = kenlm.Model(str(path))
    context = sentences[0].split()[:2]
    predictable = [*arpa_vocabulary(path), "</s>", "<unk>"]
    total = sum(10 ** conditional_log10(model, context, word) for word in predictable)
    assert math.isclose(total, 1.0, abs_tol=1e-4)


def test_arpa_rejects_sentence_markers(tmp_path):
    with pytest.raises(ValueError, match="sentence 2"):
        build_arpa(["A B", "<s> A"], tmp_path / "x.arpa")


# ---------------------------------------------------------------- LM beam search

# C, A, then R slightly above T: greedy reads CAR; an LM trained mostly on CAT should overturn it.
AMBIGUOUS = [{"C": 0.9}, {"A": 0.9}, {"<blank>": 0.9}, {"R": 0.5, "T": 0.45}, {"|": 0.9}]
CAT_CORPUS = ["CAT"] * 8 + ["CAR"] + ["CAT CAR"]


def test_word_lm_overturns_greedy_on_ambiguous_acoustics(tmp_path):
    arpa = tmp_path / "words.arpa"
    build_arpa(CAT_CORPUS, arpa, order=3)
    lexicon = write_lexicon(["CAT", "CAR", "THE"], tmp_path / "lexicon.txt", vocab=LETTERS)
    assert lexicon.read_text().splitlines() == ["CAR\tC A R |", "CAT\tC A T |"]  # THE: no H, E in vocab
    log_probs = emissions(LETTERS, AMBIGUOUS)
    assert GreedyDecoder(LETTERS).decode(log_probs) == ["CAR"]
    without_lm = LMBeamDecoder(LETTERS, arpa, lexicon, BeamSettings(lm_weight=0.0))
    with_lm = LMBeamDecoder(LETTERS, arpa, lexicon, BeamSettings(lm_weight=2.0))
    assert without_lm.decode(log_probs, torch.tensor([5])) == ["CAR"]
    assert with_lm.decode(log_probs, torch.tensor([5])) == ["CAT"]


def test_lexicon_free_letter_lm_overturns_greedy(tmp_path):
    arpa = tmp_path / "letters.arpa"
    build_arpa([words_to_letters(line) for line in CAT_CORPUS], arpa, order=4)
    log_probs = emissions(LETTERS, AMBIGUOUS)
    assert LMBeamDecoder(LETTERS, arpa, None, BeamSettings(lm_weight=0.0)).decode(log_probs) == ["CAR"]
    assert LMBeamDecoder(LETTERS, arpa, None, BeamSettings(lm_weight=2.0)).decode(log_probs) == ["CAT"]


def test_lexicon_with_unknown_letters_is_named(tmp_path):
    lexicon = write_lexicon(["THE"], tmp_path / "lexicon.txt")
    with pytest.raises(ValueError, match=r"lexicon.txt:1: tokens \['E', 'H'\]"):
        LMBeamDecoder(LETTERS, None, lexicon)


def test_beam_decoder_needs_word_separator():
    phones = Vocabulary.from_symbols(["AH", "K"])
    with pytest.raises(ValueError, match="word separator"):
        LMBeamDecoder(phones, None, None)
