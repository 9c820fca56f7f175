"""Synthetic speakers: a unique (espeak voice variant, English accent) pair plus prosody jitter.

Each speaker keeps its settings for all its utterances, so speaker identity is learnable; pairs are
drawn without replacement across all splits, so dev/test speakers sound unlike any train speaker
(up to the number of available pairs; beyond it pairs repeat with different jitter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from audiossl.audio.espeak import VoiceSettings, available_accents, available_variants, data_path

# Variants whose files add no robot tone filter, heavy echo or whisper (read from voices/!v); the
# rest of the 104 bundled variants are novelty voices.
HUMAN_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 croak klatt klatt2 klatt3 klatt4 Alex Andy Annie Denis Gene "
    "Jacky Lee Mario Michael Mike adam aunty belinda benjamin boris david ed edward grandma grandpa "
    "gustave ian linda max norbert paul quincy rob robert shelby steph travis victor"
).split()


@dataclass(frozen=True)
class Speaker:
    id: int
    sex: str  # "M" / "F", from the variant's gender line or its base pitch
    split: str
    voice: VoiceSettings

    @property
    def name(self) -> str:
        v = self.voice
        return f"espeak {v.name} rate {v.rate} pitch {v.pitch} range {v.pitch_range} gap {v.word_gap}"


def usable_variants(wanted: list[str] | None = None) -> list[str]:
    """``wanted`` (default ``HUMAN_VARIANTS``) restricted to the variant files really bundled."""
    present = set(available_variants())
    missing = [v for v in wanted or [] if v not in present]
    if missing:
        raise ValueError(f"espeak voice variants not in {data_path() / 'voices' / '!v'}: {missing}")
    return [v for v in (wanted or HUMAN_VARIANTS) if v in present]


def usable_accents(wanted: list[str] | None = None) -> list[str]:
    present = available_accents()
    missing = [a for a in wanted or [] if a not in present]
    if missing:
        raise ValueError(f"espeak accents not bundled: {missing} (available: {present})")
    return list(wanted or present)


def variant_sex(variant: str) -> str:
    """``F`` when the variant file says female or its base pitch is high, else ``M``."""
    text = (data_path() / "voices" / "!v" / variant).read_text(errors="replace").lower()
    gender = re.search(r"^\s*gender\s+(\w+)", text, re.MULTILINE)
    if gender:
        return "F" if gender.group(1).startswith("f") else "M"
    pitch = re.search(r"^\s*pitch\s+(\d+)", text, re.MULTILINE)
    return "F" if pitch and int(pitch.group(1)) >= 140 else "M"


def jittered_voice(accent: str, variant: str, rng: np.random.Generator) -> VoiceSettings:
    """Prosody offsets inside ranges where espeak stays intelligible."""
    return VoiceSettings(
        accent=accent,
        variant=variant,
        rate=int(rng.integers(135, 211)),
        pitch=int(rng.integers(25, 76)),
        pitch_range=int(rng.integers(20, 81)),
        word_gap=int(rng.choice([0, 0, 0, 1, 2])),
    )


def draw_speakers(
    counts: dict[str, int], rng: np.random.Generator, variants: list[str], accents: list[str], first_id: int = 100
) -> list[Speaker]:
    """``counts[split]`` speakers per split, ids consecutive from ``first_id``, pairs without replacement."""
    pairs = [(a, v) for v in variants for a in accents]
    order = rng.permutation(len(pairs))
    speakers: list[Speaker] = []
    for split, count in counts.items():
        for _ in range(count):
            accent, variant = pairs[order[len(speakers) % len(pairs)]]
            voice = jittered_voice(accent, variant, rng)
            speakers.append(Speaker(first_id + len(speakers), variant_sex(variant), split, voice))
    return speakers
