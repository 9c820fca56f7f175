"""Offline speech synthesis and G2P with espeak-ng, called through ctypes.

Why espeak-ng: it is small and fast (hundreds of times real time), needs no model weights and ships
on PyPI with its data (``espeakng-loader``), so the embedded corpus can be rebuilt anywhere without a
network. Its synth callback reports a PHONEME event at the start of every phone, which gives phone
alignments that are consistent with the audio by construction (no forced aligner needed).

espeak-ng keeps one global synthesizer per process: every call here takes ``_LOCK`` so threads
cannot interleave voices or callbacks. Use processes for parallel synthesis.

Phone labels are ARPAbet-39 without stress (the CMUdict set) plus ``SIL``. ``ESPEAK_TO_ARPABET``
documents the mapping from espeak's en/en-us phoneme mnemonics (read from ``phontab``: the ``base1``
and ``en`` tables); ``NON_RHOTIC_OVERRIDES`` drops the r-colouring for accents that do not
pronounce post-vocalic r, so the labels follow what the audio says.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soxr

SAMPLE_RATE = 16_000
ARPABET_PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V",
    "W", "Y", "Z", "ZH",
)  # fmt: skip
SILENCE = "SIL"
"""The alignment label of a pause: written by the synthetic corpus, expected in ``.align`` files, the one name."""

# espeak mnemonic (stress marks removed) -> ARPAbet-39 phones; [] = no segment of its own (the time
# goes to the phone before). Diphthongs with r or schwa and syllabic consonants become two phones.
ESPEAK_TO_ARPABET: dict[str, list[str]] = {
    # pauses (base1)
    "_": [SILENCE], "_:": [SILENCE], "_!": [SILENCE], "_|": [SILENCE], "_::": [SILENCE],
    "_;_": [SILENCE], "_^_": [SILENCE], "_X1": [SILENCE], "#X1": [SILENCE], "||": [SILENCE],
    # virtual / modifier symbols: length, syllable break, palatalisation
    ":": [], "-": [], ";": [], "*": [],
    # schwas and reduced vowels
    "@": ["AH"], "@2": ["AH"], "@5": ["AH"], "@-": ["AH"], "@#": ["AH"], "#@": ["AH"], "a2": ["AH"],
    "#a": ["AH"], "#e": ["IH"], "#i": ["IH"], "#o": ["AH"], "#u": ["UH"],
    # r-coloured vowels (rhotic accents; see NON_RHOTIC_OVERRIDES). Checked against espeak's own IPA
    # output for the vocabulary: i@ is [iə] (idea), i@3 [ɪɹ] (near), aI@ [aɪə], aI3 [aɪɚ], IR [əɹ].
    "3": ["ER"], "3:": ["ER"], "A@": ["AA", "R"], "O@": ["AO", "R"], "o@": ["AO", "R"],
    "e@": ["EH", "R"], "i@": ["IY", "AH"], "i@3": ["IH", "R"], "U@": ["UH", "R"], "IR": ["AH", "R"],
    "VR": ["AH", "R"], "aI@": ["AY", "AH"], "aI3": ["AY", "ER"], "aU@": ["AW", "ER"],
    # monophthongs
    "a": ["AE"], "aa": ["AE"], "a#": ["AH"], "a#2": ["AH"], "a/": ["AE"], "A:": ["AA"], "A#": ["AA"],
    "A~": ["AA"], "0": ["AA"], "0#": ["AA"], "02": ["AA"], "E": ["EH"], "E#": ["EH"], "E2": ["EH"],
    "e": ["EH"], "e#": ["EH"], "e:": ["EY"], "I": ["IH"], "I#": ["IH"], "I2": ["IH"], "I2#": ["IH"],
    "i": ["IY"], "i:": ["IY"], "O": ["AO"], "O:": ["AO"], "O2": ["AO"], "O~": ["AO"], "o": ["OW"],
    "o:": ["OW"], "U": ["UH"], "u": ["UW"], "u:": ["UW"], "V": ["AH"],
    # diphthongs
    "aI": ["AY"], "aI2": ["AY"], "aU": ["AW"], "eI": ["EY"], "oU": ["OW"], "oU#": ["OW"], "OI": ["OY"],
    # syllabic consonants
    "@L": ["AH", "L"], "l-": ["AH", "L"], "m-": ["AH", "M"], "n-": ["AH", "N"], "N-": ["AH", "NG"],
    "r-": ["R"], "r\"": ["ER"],
    # stops (flap, glottal stop and dental variants fold into the CMUdict stop, as CMUdict does)
    "p": ["P"], "b": ["B"], "t": ["T"], "t#": ["T"], "t2": ["T"], "t[": ["T"], "?": ["T"], "d": ["D"],
    "d#": ["D"], "d[": ["D"], "k": ["K"], "c": ["K"], "q": ["K"], "g": ["G"], "J": ["G"],
    # affricates
    "tS": ["CH"], "tS;": ["CH"], "dZ": ["JH"], "dZ;": ["JH"],
    # fricatives
    "f": ["F"], "v": ["V"], "v#": ["V"], "B": ["V"], "T": ["TH"], "D": ["DH"], "s": ["S"], "s.": ["S"],
    "s;": ["S"], "z": ["Z"], "z#": ["Z"], "z/2": ["Z"], "z.": ["Z"], "z;": ["Z"], "S": ["SH"],
    "S;": ["SH"], "Z": ["ZH"], "Z;": ["ZH"], "h": ["HH"], "x": ["K"], "X": ["HH"], "C": ["HH"],
    "Q": ["G"], "Q^": ["G"], "Q\"": ["G"], "l#": ["L"],
    # nasals
    "m": ["M"], "n": ["N"], "n.": ["N"], "n^": ["N"], "N": ["NG"],
    # liquids and glides
    "l": ["L"], "l/": ["L"], "l/2": ["L"], "l/3": ["L"], "l^": ["L"], "l.": ["L"], "L": ["L"],
    "L/": ["L"], "r": ["R"], "r/": ["R"], "r.": ["R"], "R": ["R"], "R2": ["R"], "R3": ["R"],
    "**": ["R"], "j": ["Y"], "J^": ["Y"], "w": ["W"], "w#": ["W"],
}  # fmt: skip

# Accents without post-vocalic r: espeak writes the same mnemonics, its IPA (and audio) has no r.
NON_RHOTIC_OVERRIDES: dict[str, list[str]] = {
    "3": ["AH"], "A@": ["AA"], "O@": ["AO"], "o@": ["AO"], "e@": ["EH"], "i@3": ["IY", "AH"],
    "U@": ["UH", "AH"], "IR": ["AH"], "VR": ["AH"], "aI3": ["AY", "AH"], "aU@": ["AW", "AH"],
}  # fmt: skip
NON_RHOTIC_ACCENTS = frozenset({"en", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"})
_STRESS_MARKS = "',%=!"

# espeak_EVENT_TYPE values and option bits from speak_lib.h
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "word_gap": 7}


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded, initialised, or rejected a voice or text."""


@dataclass(frozen=True)
class VoiceSettings:
    """One synthetic speaker: an accent, a voice variant and prosody offsets (espeak units)."""

    accent: str = "en-us"
    variant: str = ""  # a file in espeak-ng-data/voices/!v, e.g. "m3"; "" = the accent's default
    rate: int = 175  # words per minute, 80..450
    pitch: int = 50  # 0..99, relative to the variant's base pitch
    pitch_range: int = 50  # 0..99, intonation range
    word_gap: int = 0  # extra pause between words, units of 10 ms

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}" if self.variant else self.accent


@dataclass
class SynthesisResult:
    """16 kHz mono float32 audio plus contiguous (phone, start_s, end_s) segments covering it."""

    waveform: np.ndarray
    phones: list[tuple[str, float, float]]
    # word events espeak reported: fewer than written is normal (its dictionary joins "on the"),
    # more means it expanded something (a spelled-out abbreviation) that a transcript would miss
    words: int = 0

    @property
    def seconds(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_LOCK = threading.RLock()


class _Engine:
    """The process-wide espeak-ng instance; all methods must run under ``_LOCK``."""

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = Path(espeakng_loader.get_data_path())
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as error:
            raise EspeakError(f"cannot load libespeak-ng from espeakng-loader: {error}") from error
        self._declare_signatures()
        options = _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT
        self.native_rate = self.lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), options)
        if self.native_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed with data at {self.data_path}")
        self.lib.espeak_ng_SetPhonemeEvents(1, 0)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, bytes]] = []
        self._callback = _Callback(self._on_audio)  # kept on self: ctypes must not free it
        self.lib.espeak_SetSynthCallback(self._callback)
        self._voice: VoiceSettings | None = None

    def _declare_signatures(self) -> None:
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

    def _on_audio(self, wav, n_samples, events) -> int:  # noqa: ANN001 (ctypes pointers)
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            name = event.id.string if event.type == _EVENT_PHONEME else b""
            self._events.append((event.type, event.sample, name))
            i += 1
        return 0  # 0 = continue synthesis

    def set_voice(self, voice: VoiceSettings) -> None:
        if voice == self._voice:
            return
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            self._voice = None
            raise EspeakError(f"espeak-ng has no voice {voice.name!r} (data: {self.data_path})")
        for key in ("rate", "pitch", "word_gap"):
            self.lib.espeak_SetParameter(_PARAM[key], int(getattr(voice, key)), 0)
        self.lib.espeak_SetParameter(_PARAM["range"], int(voice.pitch_range), 0)
        self._voice = voice

    def synthesize(self, text: str, seed: int) -> tuple[np.ndarray, list[tuple[int, int, bytes]]]:
        self._chunks, self._events = [], []
        self.lib.espeak_ng_SetRandSeed(seed)
        data = text.replace("\0", " ").encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if status != 0:
            raise EspeakError(f"espeak_Synth failed (status {status}) on text {text[:60]!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events

    def text_to_phonemes(self, text: str) -> list[str]:
        """espeak's mnemonic phonemes for ``text``, one string per word, phones separated by spaces."""
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        words: list[str] = []
        separator = ord(" ") << 8  # bits 8-23: separator between phoneme names
        while pointer.value:
            clause = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, separator)
            words += [w for w in (clause or b"").decode("utf-8").split("  ") if w.strip()]
        return words


@cache
def _engine() -> _Engine:
    return _Engine()


@cache
def data_path() -> Path:
    """Where espeakng-loader keeps espeak-ng's data (voices, phoneme tables, dictionaries)."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


@cache
def available_variants() -> tuple[str, ...]:
    """Voice variant files the bundled data really has (``voices/!v``), sorted."""
    return tuple(sorted(p.name for p in (data_path() / "voices" / "!v").iterdir() if p.is_file()))


@cache
def available_accents() -> tuple[str, ...]:
    """English accents (lower-cased language codes) present in the bundled ``lang/gmw`` directory."""
    names = [p.name.lower() for p in (data_path() / "lang" / "gmw").iterdir() if p.name.lower().startswith("en")]
    return tuple(sorted(n for n in names if n != "en-shaw"))  # en-Shaw is the Shavian script, not an accent


def mnemonic_to_arpabet(mnemonic: str, accent: str = "en-us") -> list[str]:
    """Map one espeak phoneme mnemonic to ARPAbet-39 phones (stress and length marks dropped).

    Raises ``KeyError`` naming the mnemonic when the table has no entry, so new espeak data that
    introduces a phoneme fails loudly instead of producing silent label noise.
    """
    bare = mnemonic.lstrip(_STRESS_MARKS)
    if accent.lower() in NON_RHOTIC_ACCENTS and bare in NON_RHOTIC_OVERRIDES:
        return NON_RHOTIC_OVERRIDES[bare]
    if bare in ESPEAK_TO_ARPABET:
        return ESPEAK_TO_ARPABET[bare]
    if bare.endswith(":") and bare[:-1] in ESPEAK_TO_ARPABET:  # a length mark glued to the phone
        return ESPEAK_TO_ARPABET[bare[:-1]]
    raise KeyError(f"espeak phoneme {mnemonic!r} has no ARPAbet mapping (accent {accent})")


def mnemonics_to_arpabet(mnemonics: list[str], accent: str = "en-us") -> list[list[str]]:
    """Map a phone sequence; an r-coloured vowel right before an espeak ``r`` loses its own R.

    espeak writes "seriously" as ``s i@ r i@ s l i``: mapping ``i@`` to IH R alone would give
    IH R R, while the audio (and CMUdict) has one R.
    """
    mapped = [mnemonic_to_arpabet(m, accent) for m in mnemonics]
    for i in range(len(mapped) - 1):
        if len(mapped[i]) > 1 and mapped[i][-1] == "R" and mapped[i + 1][:1] == ["R"]:
            mapped[i] = mapped[i][:-1]
    return mapped


def phonemize_arpabet(text: str, voice: str = "en-us") -> list[list[str]]:
    """ARPAbet-39 phones for each whitespace-separated word of ``text`` (G2P for out-of-vocabulary words).

    Words are phonemized one at a time so the output always has one entry per input word, even when
    espeak would merge or split words in running text. ``voice`` is an espeak voice name (accent).
    """
    accent = voice.split("+")[0]
    result = []
    with _LOCK:
        engine = _engine()
        engine.set_voice(VoiceSettings(accent=accent, variant=voice.partition("+")[2]))
        for word in text.split():
            mnemonics = " ".join(engine.text_to_phonemes(word)).split()
            phones = mnemonics_to_arpabet(mnemonics, accent)
            result.append([p for labels in phones for p in labels if p != SILENCE])
    return result


def synthesize(text: str, voice: VoiceSettings, seed: int = 0) -> SynthesisResult:
    """Speak ``text`` with ``voice``; return 16 kHz audio and phone segments from espeak's events.

    ``seed`` fixes espeak's random generator. espeak-ng also keeps static state that no API resets
    (the pitch-flutter phase, some wave-generator state), so the samples depend slightly on what this
    process synthesized before: for byte-identical output, make the same sequence of calls in a
    fresh process (``audiossl.data.synth.build`` runs each chapter in its own worker for this).
    """
    with _LOCK:
        engine = _engine()
        engine.set_voice(voice)
        audio, events = engine.synthesize(text, seed)
        native_rate = engine.native_rate
    waveform = _resample(audio.astype(np.float32) / 32768.0, native_rate)
    phones = _events_to_segments(events, len(audio), native_rate, len(waveform), voice.accent)
    words = sum(1 for kind, _, _ in events if kind == _EVENT_WORD)
    return SynthesisResult(waveform=waveform, phones=phones, words=words)


def _resample(audio: np.ndarray, native_rate: int) -> np.ndarray:
    if native_rate == SAMPLE_RATE or len(audio) == 0:
        return audio
    return soxr.resample(audio, native_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def _events_to_segments(
    events: list[tuple[int, int, bytes]], n_native: int, native_rate: int, n_out: int, accent: str
) -> list[tuple[str, float, float]]:
    """Turn phoneme start events into contiguous segments that cover ``[0, n_out / 16 kHz]``.

    Times are converted in the native sample domain (resampling preserves time), rounded to
    milliseconds, and segments that round to zero length or repeat SIL are merged away.
    """
    phone_events = [(sample, name.decode("utf-8")) for kind, sample, name in events if kind == _EVENT_PHONEME]
    labels = mnemonics_to_arpabet([name for _, name in phone_events], accent)
    starts = [(0, [SILENCE])] + [(min(max(s, 0), n_native), lab) for (s, _), lab in zip(phone_events, labels)]
    total = round(n_out / SAMPLE_RATE, 3)
    pieces: list[tuple[str, float, float]] = []
    for (start, labels), (end, _) in zip(starts, starts[1:] + [(n_native, [])]):
        pieces += _split_segment(labels, start / native_rate, end / native_rate)
    return merge_segments(pieces, total)


def _split_segment(labels: list[str], start: float, end: float) -> list[tuple[str, float, float]]:
    """One espeak phone that maps to several ARPAbet phones is split into equal parts."""
    if not labels:
        return [("", start, end)]  # no label: merged into the previous segment
    step = (end - start) / len(labels)
    return [(label, start + i * step, start + (i + 1) * step) for i, label in enumerate(labels)]


def merge_segments(pieces: list[tuple[str, float, float]], total: float) -> list[tuple[str, float, float]]:
    """Round boundaries to ms, drop empty pieces, merge unlabeled pieces and adjacent SILs.

    The result starts at 0.0, ends at ``total`` and every start equals the previous end.
    """
    merged: list[list] = []
    for label, start, end in pieces:
        start, end = min(round(start, 3), total), min(round(end, 3), total)
        if merged and (not label or (label == SILENCE and merged[-1][0] == SILENCE)):
            merged[-1][2] = max(merged[-1][2], end)
        elif end > start:
            if merged:
                start = merged[-1][2]
            if end > start:
                merged.append([label or SILENCE, start, end])
    if not merged:
        return [(SILENCE, 0.0, total)] if total > 0 else []
    merged[0][1] = 0.0
    merged[-1][2] = total
    return [(label, start, end) for label, start, end in merged]
