"""A tiny tone corpus on disk (real FLAC files, fairseq manifests with every label kind) for CLI tests.

Each letter is a tone (its own frequency), each word a run of tones with silence between words, so labels
and alignments are exact and a small model can learn them in a few updates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from audiossl.data.manifest import ManifestRow, count_symbols, write_dict, write_manifest
from audiossl.asr.vocab import words_to_letters

SAMPLE_RATE = 16_000
LETTERS = "ABEHLO"
WORDS = ["HA", "BE", "HOLE", "ABLE", "BALL", "HELLO", "LOBE", "OBOE"]
LETTER_SECONDS, GAP_SECONDS = 0.08, 0.06
SPLITS = {"train_10min": 12, "dev_clean": 4, "test_clean": 4, "test_other": 3}
TINY_ENCODER = [
    "encoder.conv_layers=[[16,10,5],[16,3,2],[16,3,2],[16,3,2],[16,3,2],[16,2,2],[16,2,2]]",
    "encoder.model_dim=32", "encoder.num_layers=2", "encoder.num_heads=2", "encoder.ffn_dim=64",
    "encoder.pos_conv_kernel=8", "encoder.pos_conv_groups=4",
]


def tone_utterance(words: list[str], pitch: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Waveform and ``.align`` line: each letter a tone (its own frequency), silence between words."""
    pieces, segments, time = [], [], 0.0
    for word in words:
        for letter in word:
            t = np.arange(int(LETTER_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
            pieces.append(0.4 * np.sin(2 * np.pi * pitch * (300 + 170 * LETTERS.index(letter)) * t))
            segments.append(f"{letter}:{time:.3f}:{time + LETTER_SECONDS:.3f}")
            time += LETTER_SECONDS
        pieces.append(np.zeros(int(GAP_SECONDS * SAMPLE_RATE)))
        segments.append(f"SIL:{time:.3f}:{time + GAP_SECONDS:.3f}")
        time += GAP_SECONDS
    wave = np.concatenate(pieces) + 0.01 * rng.standard_normal(sum(p.size for p in pieces))
    return wave.astype(np.float32), " ".join(segments)


def write_tone_corpus(root: Path, splits: dict[str, int] | None = None, speakers: int = 2,
                      dict_split: str = "train_10min") -> Path:
    """LibriSpeech-named FLACs and fairseq manifests with every label kind; returns the manifest dir.

    ``splits`` maps split names to utterance counts; speakers take turns and differ in pitch.
    """
    rng = np.random.default_rng(0)
    manifests = root / "manifests"
    for split, count in (splits or SPLITS).items():
        rows, labels = [], {kind: [] for kind in ("wrd", "ltr", "phn", "spk", "align")}
        for index in range(count):
            speaker_index = index % speakers
            speaker = str(100 * (speaker_index + 1))
            words = [WORDS[i] for i in rng.choice(len(WORDS), size=2 + index % 2)]
            wave, alignment = tone_utterance(words, 1.0 + 0.1 * speaker_index, rng)
            relpath = f"{split}/{speaker}/1/{speaker}-1-{index:04d}.flac"
            (root / "audio" / relpath).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(root / "audio" / relpath, wave, SAMPLE_RATE)
            rows.append(ManifestRow(relpath, wave.size))
            text = " ".join(words)
            for kind, line in (("wrd", text), ("ltr", words_to_letters(text)), ("phn", " ".join(text.replace(" ", ""))),
                               ("spk", speaker), ("align", alignment)):
                labels[kind].append(line)
        write_manifest(manifests, split, root / "audio", rows, labels)
        if split == dict_split:
            write_dict(manifests / "dict.ltr.txt", count_symbols(labels["ltr"]), extra_symbols=[*LETTERS, "|"])
            write_dict(manifests / "dict.phn.txt", count_symbols(labels["phn"]), extra_symbols=LETTERS)
    return manifests


def run_cli(name: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_COMPILE_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", f"from audiossl.cli.{name} import main; main()", *overrides]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
