"""An accent-ID set in which the voice tells nothing about the accent: every espeak voice reads in every accent.

Why a set of its own: in the embedded corpus each speaker is one (voice variant, accent) pair drawn without
replacement, so an unseen test speaker's variant has usually been heard in training under another accent,
and a probe on mean-pooled frames learns the voice instead of the accent (MFCC scored below chance there).
Here each voice (an espeak variant with its own prosody jitter: rate, pitch, range, word gap) reads the same
sentences once in each accent, with the same espeak seed, so within a voice and a sentence only the accent
changes. Train, dev and test voices are disjoint sets of variants, and no sentence is read in two splits: a
probe beats chance only by hearing an accent on a voice and a text it never heard.

Clips last ``seconds`` (2-4 s, long enough for the bench's windows): a voice tries its planned sentences in
order and keeps the first ones whose readings in every accent fit, so each kept sentence stays balanced
over accents. A faint pink room noise and a random loudness keep the clips from being digitally clean.

Layout: ``<out_dir>/<split>/<voice>/<voice>_<accent>_<n>.flac`` (16 kHz 16-bit mono; the voice is named by
its variant, ``n`` counts its kept sentences) and ``accents.json`` (the config, each voice's split and
prosody, counts). Manifests ``<manifest_dir>/{train,dev,test}.tsv`` with ``.accent`` (the espeak accent),
``.spk`` (the voice) and ``.wrd`` (the sentence).

Determinism: voices, prosody and sentences are planned in the parent from the seed; each voice is read in a
fresh process in a fixed order (espeak keeps state between calls that no API resets, see ``build``), with
its noise drawn from (seed, split, voice, sentence), so the same config gives the same bytes.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from audiossl.audio.corrupt import add_noise, pink_noise
from audiossl.audio.espeak import SAMPLE_RATE, VoiceSettings, synthesize
from audiossl.config import ConfigError, check_positive
from audiossl.data.manifest import ManifestRow, write_manifest
from audiossl.data.synth.build import check_voices
from audiossl.data.synth.clip_sets import in_fresh_processes, matching_record, write_record
from audiossl.data.synth.grammar import Sentence, SentenceGrammar, build_vocabulary
from audiossl.data.synth.speakers import jittered_voice, usable_accents, usable_variants

SPLITS = ("train", "dev", "test")
LABEL = "accent"  # the label file the bench reads: <split>.accent
FORMAT_VERSION = 1
CANDIDATES = 4  # sentences planned per sentence kept; readings longer or shorter than ``seconds`` are dropped


@dataclass
class AccentsConfig:
    """``conf/accents.yaml``: the accent set's voices, sentences and where it goes."""

    out_dir: str = "data/accents"
    manifest_dir: str = "manifests/accents"
    seed: int = 0
    workers: int = 1
    train_voices: int = 24  # each voice is its own espeak variant, so no voice is in two splits
    dev_voices: int = 6
    test_voices: int = 12
    train_sentences: int = 5  # per train voice, each read once in every accent
    eval_sentences: int = 3  # per dev voice and per test voice
    seconds: list[float] = field(default_factory=lambda: [2.0, 4.0])  # every reading of a kept sentence fits
    snr_db: list[float] = field(default_factory=lambda: [20.0, 40.0])  # room noise under every clip
    variants: list[str] = field(default_factory=list)  # the voices drawn from; empty = speakers.HUMAN_VARIANTS
    accents: list[str] = field(default_factory=list)  # the classes; empty = every bundled English accent
    force: bool = False

    def validate(self) -> AccentsConfig:
        for key in ("workers", "train_voices", "dev_voices", "test_voices", "train_sentences", "eval_sentences"):
            check_positive(getattr(self, key), f"accent_set.{key}")
        if self.seed < 0:
            raise ConfigError(f"invalid config at 'accent_set.seed': must be >= 0, got {self.seed}")
        if len(self.seconds) != 2 or not 0 < self.seconds[0] < self.seconds[1]:
            raise ConfigError(f"invalid config at 'accent_set.seconds': give [shortest, longest] > 0, got {self.seconds}")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"invalid config at 'accent_set.snr_db': give [low, high] in dB, got {self.snr_db}")
        check_voices(self.variants, self.accents, None, "accent_set")
        if len(set(usable_accents(self.accents))) < 2:
            raise ConfigError(f"invalid config at 'accent_set.accents': need two accents at least, got {self.accents}")
        voices, variants = self.train_voices + self.dev_voices + self.test_voices, len(usable_variants(self.variants))
        if voices > variants:
            raise ConfigError(f"invalid config at 'accent_set.train_voices': train + dev + test voices ({voices}) "
                              f"exceed the {variants} espeak variants of accent_set.variants; each voice is its own "
                              "variant, so that no voice is heard in two splits")
        return self

    def content(self) -> dict:
        """The fields that decide the bytes written."""
        return {k: v for k, v in asdict(self).items() if k not in ("out_dir", "manifest_dir", "workers", "force")}


@dataclass(frozen=True)
class Voice:
    """One reader: a variant with prosody that stays the same in every accent, and its candidate sentences."""

    split: str
    settings: VoiceSettings  # each clip replaces the accent
    sentences: tuple[Sentence, ...]

    @property
    def name(self) -> str:
        return self.settings.variant


@dataclass
class Clip:
    relpath: str
    accent: str
    voice: str
    transcript: str
    samples: int


@dataclass
class AccentsSummary:
    out_dir: str
    counts: dict[str, dict[str, float]]  # split -> voices, accents, clips, minutes
    build_seconds: float = 0.0
    reused: bool = False

    def table(self) -> str:
        rows = [f"{'split':<6} {'voices':>6} {'accents':>7} {'clips':>6} {'minutes':>7}"]
        for split, c in self.counts.items():
            rows.append(f"{split:<6} {c['voices']:>6} {c['accents']:>7} {c['clips']:>6} {c['minutes']:>7.1f}")
        verb = "reused existing set" if self.reused else f"built in {self.build_seconds:.1f} s"
        return "\n".join(rows + [f"{verb}: {self.out_dir}"])


def build_accents(cfg: AccentsConfig) -> AccentsSummary:
    """Build (or reuse, when ``accents.json`` records the same config and the manifests exist) the set."""
    cfg.validate()
    root, started = Path(cfg.out_dir), time.perf_counter()
    record = root / "accents.json"
    saved = None if cfg.force else matching_record(record, FORMAT_VERSION, cfg.content())
    manifests = [Path(cfg.manifest_dir) / f"{split}.{kind}" for split in SPLITS for kind in ("tsv", LABEL, "spk")]
    if saved is not None and all(path.is_file() for path in manifests):
        return AccentsSummary(str(root), saved["counts"], reused=True)
    record.unlink(missing_ok=True)
    for split in SPLITS:
        shutil.rmtree(root / split, ignore_errors=True)
    voices = plan_voices(cfg)
    read = in_fresh_processes(cfg.workers, __name__, [(_read_voice, (cfg, voice, index))
                                                       for index, voice in enumerate(voices)])
    counts = {}
    for split in SPLITS:
        clips = [clip for voice, done in zip(voices, read) if voice.split == split for clip in done]
        write_manifest(cfg.manifest_dir, split, root, [ManifestRow(c.relpath, c.samples) for c in clips],
                       {LABEL: [c.accent for c in clips], "spk": [c.voice for c in clips],
                        "wrd": [c.transcript for c in clips]})
        counts[split] = {"voices": sum(1 for v in voices if v.split == split), "accents": len({c.accent for c in clips}),
                         "clips": len(clips), "minutes": round(sum(c.samples for c in clips) / SAMPLE_RATE / 60, 2)}
    described = {v.name: {"split": v.split, "rate": v.settings.rate, "pitch": v.settings.pitch,
                          "range": v.settings.pitch_range, "gap": v.settings.word_gap} for v in voices}
    write_record(record, FORMAT_VERSION, cfg.content(), counts=counts, voices=described)
    return AccentsSummary(str(root), counts, time.perf_counter() - started)


def plan_voices(cfg: AccentsConfig) -> list[Voice]:
    """Train, dev then test voices on distinct variants, with sentences never planned twice; a pure function of ``cfg``.

    Sentences have 3 words per second of ``seconds`` (espeak reads 2.5-4 words a second at the jittered
    rates), so about 70 % of the candidates fit in every accent.
    """
    rng = np.random.default_rng([cfg.seed, 7907])
    variants, accents = usable_variants(cfg.variants), usable_accents(cfg.accents)
    order = iter(rng.permutation(len(variants)))
    low, high = cfg.seconds
    grammar = SentenceGrammar(build_vocabulary(), max(1, math.floor(3 * low)), max(1, math.ceil(3 * high)))
    planned: set[str] = set()
    voices = []
    for split, count in (("train", cfg.train_voices), ("dev", cfg.dev_voices), ("test", cfg.test_voices)):
        wanted = CANDIDATES * (cfg.train_sentences if split == "train" else cfg.eval_sentences)
        for _ in range(count):
            settings = jittered_voice(accents[0], variants[next(order)], rng)
            sentences: list[Sentence] = []
            while len(sentences) < wanted:
                sentence = grammar.sample(rng)
                if sentence.transcript not in planned:
                    planned.add(sentence.transcript)
                    sentences.append(sentence)
            voices.append(Voice(split, settings, tuple(sentences)))
    return voices


# ---- worker side: one fresh process per voice ----------------------------------------------------


def _read_voice(cfg: AccentsConfig, voice: Voice, index: int) -> list[Clip]:
    """The voice's first sentences whose readings in every accent last ``seconds``, each read in every accent."""
    accents = usable_accents(cfg.accents)
    wanted = cfg.train_sentences if voice.split == "train" else cfg.eval_sentences
    low, high = (round(s * SAMPLE_RATE) for s in cfg.seconds)
    clips: list[Clip] = []
    kept = 0
    for number, sentence in enumerate(voice.sentences):
        if kept == wanted:
            break
        rng = np.random.default_rng([cfg.seed, SPLITS.index(voice.split), index, number])
        seed = int(rng.integers(2**31))  # the same in every accent: only the accent changes
        readings = [synthesize(sentence.text, replace(voice.settings, accent=accent), seed=seed) for accent in accents]
        if not all(low <= len(r.waveform) <= high and r.words <= len(sentence.words) for r in readings):
            continue  # too short or long in some accent, or espeak read more words than written
        for accent, reading in zip(accents, readings):
            noisy = add_noise(reading.waveform, pink_noise(len(reading.waveform), rng), float(rng.uniform(*cfg.snr_db)))
            wave = (noisy * (rng.uniform(0.3, 0.9) / max(float(np.max(np.abs(noisy))), 1e-12))).astype(np.float32)
            relpath = f"{voice.split}/{voice.name}/{voice.name}_{accent}_{kept}.flac"
            path = Path(cfg.out_dir) / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            clips.append(Clip(relpath, accent, voice.name, sentence.transcript, len(wave)))
        kept += 1
    if kept < wanted:
        raise ConfigError(f"invalid config at 'accent_set.seconds': voice {voice.name} read only {kept} of its "
                          f"{len(voice.sentences)} planned sentences within {cfg.seconds} s in every accent "
                          f"({wanted} wanted); widen the range")
    return clips
