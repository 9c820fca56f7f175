"""espeak-ng through ctypes: synthesis, phone events, the ARPAbet table and the G2P helper."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest

from audiossl.audio import espeak as E


def phontab_mnemonics(table_names: set[str]) -> set[str]:
    """Phoneme mnemonics of the named tables in the bundled binary ``phontab`` (espeak-ng's layout)."""
    data = (E.data_path() / "phontab").read_bytes()
    offset, found = 4, set()
    for _ in range(data[0]):
        count, name = data[offset], data[offset + 4 : offset + 36].split(b"\0")[0].decode()
        offset += 36
        for i in range(count):
            mnemonic = struct.unpack_from("<I", data, offset + 16 * i)[0].to_bytes(4, "little").rstrip(b"\0")
            if name in table_names and mnemonic:
                found.add(mnemonic.decode("latin1"))
        offset += 16 * count
    return found


def test_every_english_phoneme_has_an_arpabet_mapping() -> None:
    mnemonics = phontab_mnemonics({"base1", "en", "en-us"})
    assert len(mnemonics) > 100
    for mnemonic in mnemonics:
        phones = E.mnemonic_to_arpabet(mnemonic)
        assert set(phones) <= set(E.ARPABET_PHONES) | {E.SILENCE}, mnemonic
    assert E.mnemonic_to_arpabet("'oU") == ["OW"]  # stress marks are dropped
    with pytest.raises(KeyError, match="no ARPAbet mapping"):
        E.mnemonic_to_arpabet("@@@")


def test_phonemize_matches_cmudict_style() -> None:
    assert E.phonemize_arpabet("hello world") == [["HH", "AH", "L", "OW"], ["W", "ER", "L", "D"]]
    assert E.phonemize_arpabet("seriously") == [["S", "IH", "R", "IY", "AH", "S", "L", "IY"]]
    assert E.phonemize_arpabet("Zorblax") and len(E.phonemize_arpabet("one two  three")) == 3


def test_non_rhotic_accent_drops_r() -> None:
    assert E.phonemize_arpabet("car", "en-us") == [["K", "AA", "R"]]
    assert E.phonemize_arpabet("car", "en-gb-x-rp") == [["K", "AA"]]


def test_synthesize_returns_16k_audio_and_covering_phones() -> None:
    result = E.synthesize("measure the bottle", E.VoiceSettings("en-us", "f3", rate=190))
    assert result.waveform.dtype == np.float32 and 0.5 < result.seconds < 3.0
    phones = [p for p, _, _ in result.phones if p != "SIL"]
    assert phones == ["M", "EH", "ZH", "ER", "DH", "AH", "B", "AA", "T", "AH", "L"]
    assert result.phones[0][1] == 0.0 and result.phones[-1][2] == round(result.seconds, 3)
    assert result.words == 3


def test_rate_setting_changes_duration() -> None:
    slow = E.synthesize("a longer sentence to speak", E.VoiceSettings("en-us", rate=120))
    fast = E.synthesize("a longer sentence to speak", E.VoiceSettings("en-us", rate=240))
    assert fast.seconds < 0.7 * slow.seconds


def test_threads_share_the_engine_safely() -> None:
    """Concurrent calls serialize on the lock: each thread gets its own text's phones back."""
    texts = {"m1": "red green blue", "f1": "one two three four"}
    results: dict[str, list[str]] = {}

    def speak(variant: str) -> None:
        out = E.synthesize(texts[variant], E.VoiceSettings("en-us", variant))
        results[variant] = [p for p, _, _ in out.phones if p != "SIL"]

    threads = [threading.Thread(target=speak, args=(v,)) for v in texts for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["m1"][:3] == ["R", "EH", "D"] and results["f1"][:3] == ["W", "AH", "N"]


def test_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(E.EspeakError, match="no voice"):
        E.synthesize("hello", E.VoiceSettings("xx-nowhere"))
