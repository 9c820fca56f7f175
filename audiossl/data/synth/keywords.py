"""A Speech Commands-style keyword set spoken by espeak voices (SUPERB KS: 10 words + unknown + silence).

Why synthesize it: the bench ranks upstreams offline, and the real Speech Commands is a download; the
embedded corpus's own voices give a keyword set that builds in about a minute from nothing, with speakers
that are disjoint between train, dev and test by construction (``draw_speakers`` never repeats a
(variant, accent) pair). The twelve classes are SUPERB's: ``KEYWORDS``, ``_unknown_`` (other words, here
Speech Commands v1's auxiliary words) and ``_silence_`` (background noise without speech).

Layout, as Speech Commands: ``<out_dir>/SpeechCommands/<word>/<speaker>_nohash_<n>.wav`` (16 kHz 16-bit
mono, 1 s), ``validation_list.txt`` and ``testing_list.txt`` (every other clip is training), and long noise
files in ``_background_noise_/<kind>_<split>.wav`` that ``_silence_`` windows are cut from. The test clips
and test noise again, through the corpus's ``-other`` corruptions, are in ``<out_dir>/SpeechCommands-other``
(speed changes make those clips 0.9-1.1 s). Manifests for the bench: ``<manifest_dir>/{train,dev,test,
test_other}.tsv`` with ``.kw`` (the class of each file; noise files are ``_silence_``) and ``.spk``.

Determinism: every clip draws from a generator seeded by (seed, split, speaker, word, repetition), and
each speaker (and each split's noise) is synthesized in a fresh process in a fixed order, because espeak
keeps state between calls that no API resets (see ``build``); the same config gives the same bytes.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from audiossl.audio.corrupt import CorruptionConfig, add_noise, corrupt, mix_talkers, pink_noise
from audiossl.audio.espeak import SAMPLE_RATE, synthesize
from audiossl.config import ConfigError, check_positive
from audiossl.data.manifest import ManifestRow, write_manifest
from audiossl.data.synth.build import check_voices
from audiossl.data.synth.clip_sets import in_fresh_processes, matching_record, write_record
from audiossl.data.synth.speakers import Speaker, draw_speakers, jittered_voice, usable_accents, usable_variants

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
                 "seven", "sheila", "six", "three", "tree", "two", "wow", "zero")  # Speech Commands v1's others
# What babble talkers say in the -other condition: neither a keyword nor an unknown word, so babble
# cannot turn a clip into another class.
BABBLE_WORDS = ("the a of and to in is it that was he for with as his they at be this from have or by had not "
                "but what all were we when your can said there use an each which she do how their if will way "
                "about many then them would write like so these her long make thing see him has look more day "
                "could come did number sound most people my over know water than call first who may part").split()
UNKNOWN, SILENCE = "_unknown_", "_silence_"
CLASSES = (*KEYWORDS, UNKNOWN, SILENCE)
BACKGROUND_KINDS = ("white", "pink", "brown", "hum")
SPLITS = ("train", "dev", "test")
CLIP_SAMPLES = SAMPLE_RATE  # 1 s
FORMAT_VERSION = 1
PEAK = 0.95


@dataclass
class KeywordsConfig:
    """``conf/keywords.yaml``: the keyword set's size and where it goes."""

    out_dir: str = "data/keywords"
    manifest_dir: str = "manifests/keywords"
    seed: int = 0
    workers: int = 1
    train_speakers: int = 32
    dev_speakers: int = 8
    test_speakers: int = 12
    repetitions: int = 2  # times each speaker says each keyword
    unknown_per_speaker: int = 8  # other words per speaker, drawn without repetition
    noise_seconds: float = 20.0  # length of each background noise file (one per kind and split)
    snr_db: list[float] = field(default_factory=lambda: [20.0, 40.0])  # room noise under every spoken clip
    variants: list[str] = field(default_factory=list)  # empty = speakers.HUMAN_VARIANTS
    accents: list[str] = field(default_factory=list)  # empty = every bundled English accent
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)  # the test_other condition
    force: bool = False

    def validate(self) -> KeywordsConfig:
        for key in ("workers", "train_speakers", "dev_speakers", "test_speakers", "repetitions", "noise_seconds"):
            check_positive(getattr(self, key), f"keywords.{key}")
        if self.seed < 0:
            raise ConfigError(f"invalid config at 'keywords.seed': must be >= 0, got {self.seed}")
        if not 1 <= self.unknown_per_speaker <= len(UNKNOWN_WORDS):
            raise ConfigError(f"invalid config at 'keywords.unknown_per_speaker': must be in 1..{len(UNKNOWN_WORDS)}")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"invalid config at 'keywords.snr_db': give [low, high] in dB, got {self.snr_db}")
        check_voices(self.variants, self.accents, self.corruption, "keywords")
        return self

    def content(self) -> dict:
        """The fields that decide the bytes written."""
        return {k: v for k, v in asdict(self).items() if k not in ("out_dir", "manifest_dir", "workers", "force")}


@dataclass
class Clip:
    """One file of the set: its path under ``SpeechCommands`` (or ``-other``), class, speaker and length."""

    relpath: str
    label: str
    speaker: str
    samples: int


@dataclass
class KeywordsSummary:
    out_dir: str
    counts: dict[str, dict[str, int]]  # split -> class -> files
    build_seconds: float = 0.0
    reused: bool = False

    def table(self) -> str:
        rows = [f"{'split':<11} {'files':>6} {'keywords':>8} {'unknown':>8} {'noise':>6}"]
        for split, counts in self.counts.items():
            spoken = sum(n for label, n in counts.items() if label in KEYWORDS)
            rows.append(f"{split:<11} {sum(counts.values()):>6} {spoken:>8} {counts.get(UNKNOWN, 0):>8} "
                        f"{counts.get(SILENCE, 0):>6}")
        verb = "reused existing set" if self.reused else f"built in {self.build_seconds:.1f} s"
        return "\n".join(rows + [f"{verb}: {self.out_dir}/SpeechCommands"])


def build_keywords(cfg: KeywordsConfig) -> KeywordsSummary:
    """Build (or reuse, when ``keywords.json`` records the same config) the keyword set and its manifests."""
    cfg.validate()
    root, started = Path(cfg.out_dir), time.perf_counter()
    record = root / "keywords.json"
    saved = None if cfg.force else matching_record(record, FORMAT_VERSION, cfg.content())
    if saved is not None:
        return KeywordsSummary(str(root), saved["counts"], reused=True)
    record.unlink(missing_ok=True)
    for name in ("SpeechCommands", "SpeechCommands-other"):
        shutil.rmtree(root / name, ignore_errors=True)
    speakers = plan_speakers(cfg)
    jobs = [(_speaker_clips, (cfg, speaker)) for speaker in speakers]
    jobs += [(_noise_files, (cfg, split)) for split in SPLITS]
    done = in_fresh_processes(cfg.workers, __name__, jobs)
    parts: dict[str, list[Clip]] = {split: [] for split in (*SPLITS, "test_other")}
    for clean, other in done:
        for clip in clean:
            parts[_split_of(clip, speakers)].append(clip)
        parts["test_other"] += other
    _write_lists(root / "SpeechCommands", parts)
    counts = {split: _class_counts(clips) for split, clips in parts.items()}
    for split, clips in parts.items():
        folder = "SpeechCommands-other" if split == "test_other" else "SpeechCommands"
        rows = [ManifestRow(f"{folder}/{clip.relpath}", clip.samples) for clip in clips]
        write_manifest(cfg.manifest_dir, split, root, rows,
                       {"kw": [clip.label for clip in clips], "spk": [clip.speaker for clip in clips]})
    write_record(record, FORMAT_VERSION, cfg.content(), counts=counts)
    return KeywordsSummary(str(root), counts, time.perf_counter() - started)


def plan_speakers(cfg: KeywordsConfig) -> list[Speaker]:
    """Train, dev and test speakers, each a distinct (variant, accent) pair; a pure function of ``cfg``."""
    rng = np.random.default_rng([cfg.seed, 104729])
    counts = {"train": cfg.train_speakers, "dev": cfg.dev_speakers, "test": cfg.test_speakers}
    return draw_speakers(counts, rng, usable_variants(cfg.variants), usable_accents(cfg.accents))


def speaker_name(speaker: Speaker) -> str:
    """Speech Commands names speakers by 8 hex digits."""
    return f"{speaker.id:08x}"


def _split_of(clip: Clip, speakers: list[Speaker]) -> str:
    if clip.label == SILENCE:
        return clip.relpath.rsplit("_", 1)[1].removesuffix(".wav")
    return next(s.split for s in speakers if speaker_name(s) == clip.speaker)


def _class_counts(clips: list[Clip]) -> dict[str, int]:
    return {label: sum(1 for clip in clips if clip.label == label) for label in CLASSES}


def _write_lists(root: Path, parts: dict[str, list[Clip]]) -> None:
    for split, name in (("dev", "validation_list.txt"), ("test", "testing_list.txt")):
        spoken = sorted(clip.relpath for clip in parts[split] if clip.label != SILENCE)
        (root / name).write_text("".join(line + "\n" for line in spoken))
    other = sorted(clip.relpath for clip in parts["test_other"] if clip.label != SILENCE)
    (root.parent / "SpeechCommands-other" / "testing_list.txt").write_text("".join(line + "\n" for line in other))


# ---- worker side: one fresh process per speaker (and per split's noise) --------------------------


def _speaker_clips(cfg: KeywordsConfig, speaker: Speaker) -> tuple[list[Clip], list[Clip]]:
    """Every clip of one speaker (keywords, then unknown words); test speakers' again through corruptions."""
    split_index = SPLITS.index(speaker.split)
    choice = np.random.default_rng([cfg.seed, split_index, speaker.id])
    unknown = [str(w) for w in choice.choice(UNKNOWN_WORDS, cfg.unknown_per_speaker, replace=False)]
    said = [(word, n) for n in range(cfg.repetitions) for word in KEYWORDS] + [(word, 0) for word in unknown]
    clean, other = [], []
    for word, n in said:
        word_index = (KEYWORDS + UNKNOWN_WORDS).index(word)
        rng = np.random.default_rng([cfg.seed, split_index, speaker.id, word_index, n])
        wave = _spoken_clip(word, speaker, rng, cfg.snr_db)
        label = word if word in KEYWORDS else UNKNOWN
        relpath = f"{word}/{speaker_name(speaker)}_nohash_{n}.wav"
        clean.append(_write(Path(cfg.out_dir) / "SpeechCommands", relpath, wave, label, speaker_name(speaker)))
        if speaker.split == "test":
            noisy = _corrupted(wave, rng, cfg.corruption)
            other.append(_write(Path(cfg.out_dir) / "SpeechCommands-other", relpath, noisy, label,
                                speaker_name(speaker)))
    return clean, other


def _noise_files(cfg: KeywordsConfig, split: str) -> tuple[list[Clip], list[Clip]]:
    """One background noise file per kind for ``split`` (the test ones also corrupted)."""
    clean, other = [], []
    for kind_index, kind in enumerate(BACKGROUND_KINDS):
        rng = np.random.default_rng([cfg.seed, SPLITS.index(split), 7, kind_index])
        wave = background_noise(kind, round(cfg.noise_seconds * SAMPLE_RATE), rng)
        relpath = f"_background_noise_/{kind}_{split}.wav"
        clean.append(_write(Path(cfg.out_dir) / "SpeechCommands", relpath, wave, SILENCE, "noise"))
        if split == "test":
            other.append(_write(Path(cfg.out_dir) / "SpeechCommands-other", relpath,
                                _corrupted(wave, rng, cfg.corruption), SILENCE, "noise"))
    return clean, other


def _spoken_clip(word: str, speaker: Speaker, rng: np.random.Generator, snr_db: list[float]) -> np.ndarray:
    """The word at a random place in 1 s, over faint pink room noise, at a random loudness."""
    speech = synthesize(word, speaker.voice, seed=int(rng.integers(2**31))).waveform[:CLIP_SAMPLES]
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    start = int(rng.integers(0, CLIP_SAMPLES - len(speech) + 1))
    clip[start: start + len(speech)] = speech
    clip = add_noise(clip, pink_noise(CLIP_SAMPLES, rng), float(rng.uniform(*snr_db)))
    return _scaled(clip, float(rng.uniform(0.3, 0.9)))


def background_noise(kind: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary noise without speech, at a random level: what ``_silence_`` clips are cut from."""
    if kind == "white":
        wave = rng.standard_normal(samples)
    elif kind == "pink":
        wave = pink_noise(samples, rng)
    elif kind == "brown":  # integrated white noise, its drift removed below 20 Hz
        wave = sosfilt(butter(2, 20.0, btype="highpass", fs=SAMPLE_RATE, output="sos"), np.cumsum(rng.standard_normal(samples)))
    elif kind == "hum":  # mains hum with harmonics over a little hiss
        t = np.arange(samples) / SAMPLE_RATE
        base = float(rng.choice([50.0, 60.0]))
        wave = sum(np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 6))
        wave = wave + 0.05 * rng.standard_normal(samples)
    else:
        raise ValueError(f"unknown background noise {kind!r} (choose from {BACKGROUND_KINDS})")
    wave = np.asarray(wave, np.float64)
    return _scaled(wave / (np.std(wave) + 1e-12), float(10 ** rng.uniform(-2.5, -0.7)), peak=False)


def _corrupted(wave: np.ndarray, rng: np.random.Generator, cfg: CorruptionConfig) -> np.ndarray:
    out = corrupt(wave, [], rng, cfg, SAMPLE_RATE, babble=_babble).waveform
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    return (out * (PEAK / peak) if peak > PEAK else out).astype(np.float32)


def _babble(samples: int, rng: np.random.Generator) -> np.ndarray:
    """3-6 other voices reading strings of ``BABBLE_WORDS``."""
    talkers = []
    for _ in range(int(rng.integers(3, 7))):
        voice = jittered_voice(str(rng.choice(usable_accents())), str(rng.choice(usable_variants())), rng)
        text = " ".join(str(w) for w in rng.choice(BABBLE_WORDS, 8))
        talkers.append(synthesize(text, voice, seed=int(rng.integers(2**31))).waveform)
    return mix_talkers(talkers, samples)


def _scaled(wave: np.ndarray, level: float, peak: bool = True) -> np.ndarray:
    """``wave`` with its peak (or, ``peak=False``, its standard deviation) at ``level``, never above PEAK."""
    size = float(np.max(np.abs(wave))) if peak else 1.0
    out = wave * (level / max(size, 1e-12))
    top = float(np.max(np.abs(out))) if len(out) else 0.0
    return (out * (PEAK / top) if top > PEAK else out).astype(np.float32)


def _write(root: Path, relpath: str, wave: np.ndarray, label: str, speaker: str) -> Clip:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return Clip(relpath, label, speaker, len(wave))
