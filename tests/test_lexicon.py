"""Words -> ARPAbet-39 phones (CMUdict, stress removed; espeak-ng for OOV, cached) and fairseq letters."""

from __future__ import annotations

import importlib.util

import pytest

from audiossl.data.lexicon import ARPABET_39, Lexicon, LexiconError, strip_stress
from audiossl.data.manifest import words_to_letters


def no_g2p(text: str) -> list[list[str]]:
    raise AssertionError(f"G2P called for {text!r}: the word should have come from CMUdict")


def test_known_words_from_cmudict_without_stress() -> None:
    lexicon = Lexicon(g2p=no_g2p)
    assert lexicon.pronounce("HELLO") == ["HH", "AH", "L", "OW"]
    assert lexicon.pronounce("DON'T") == ["D", "OW", "N", "T"]
    assert lexicon.phones("THE CAT") == ["DH", "AH", "K", "AE", "T"]
    assert lexicon.oov_words == []


def test_every_cmudict_phone_is_arpabet_39_after_stress_removal() -> None:
    from audiossl.data.lexicon import cmu_dictionary

    phones = {strip_stress(p) for entries in cmu_dictionary().values() for entry in entries for p in entry}
    assert phones == set(ARPABET_39)
    assert strip_stress("AH0") == "AH" and strip_stress("OW1") == "OW" and strip_stress("NG") == "NG"


def test_letters_match_fairseq_libri_labels() -> None:
    assert words_to_letters("HELLO WORLD") == "H E L L O | W O R L D |"
    assert words_to_letters("DON'T") == "D O N ' T |"


def test_oov_words_go_to_g2p_once_and_are_cached() -> None:
    calls: list[str] = []

    def fake_g2p(text: str) -> list[list[str]]:
        calls.append(text)
        return [["Z", "AO1", "R", "B"] if word == "ZORB" else ["K", "W", "IH", "K"] for word in text.split()]

    lexicon = Lexicon(g2p=fake_g2p)
    zorb, qwik = ["Z", "AO", "R", "B"], ["K", "W", "IH", "K"]
    assert lexicon.phones("HELLO ZORB QWIK ZORB") == ["HH", "AH", "L", "OW", *zorb, *qwik, *zorb]
    assert calls == ["QWIK ZORB"]  # one call for all distinct OOV words
    lexicon.pronounce_all(["ZORB", "QWIK", "HELLO"])
    assert calls == ["QWIK ZORB"] and lexicon.oov_words == ["QWIK", "ZORB"]


def test_g2p_output_outside_arpabet_is_an_error() -> None:
    lexicon = Lexicon(g2p=lambda text: [["X", "Q"] for _ in text.split()])
    with pytest.raises(LexiconError, match="'ZORB' gave phones outside ARPAbet-39"):
        lexicon.pronounce("ZORB")


@pytest.mark.skipif(importlib.util.find_spec("audiossl.audio.espeak") is None, reason="espeak module not written yet")
def test_oov_word_through_espeak() -> None:
    lexicon = Lexicon()
    phones = lexicon.pronounce_all(["ZORBLAX", "QUIBBERT", "HELLO"])
    assert phones["HELLO"] == ["HH", "AH", "L", "OW"]
    for word in ("ZORBLAX", "QUIBBERT"):
        assert phones[word] and set(phones[word]) <= set(ARPABET_39)
    assert phones["ZORBLAX"][0] == "Z" and "L" in phones["ZORBLAX"]
    assert lexicon.oov_words == ["QUIBBERT", "ZORBLAX"]
