"""Writers for the LibriSpeech directory layout (plus the phone alignments LibriSpeech lacks).

``<root>/LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt:04d>.flac`` with
``<spk>-<chapter>.trans.txt`` (``<utt-id> UPPERCASE WORDS``), ``<spk>-<chapter>.align.txt``
(``<utt-id> PHONE:START:END ...``, seconds with 3 decimals, SIL for pauses) and ``SPEAKERS.TXT``.
Keeping the exact layout means every LibriSpeech reader (ours, fairseq's, torchaudio's) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audiossl.data.manifest import parse_alignment
from audiossl.data.synth.speakers import Speaker

SAMPLE_RATE = 16_000


@dataclass
class Utterance:
    id: str
    transcript: str
    waveform: np.ndarray
    phones: list[tuple[str, float, float]]
    corruptions: list[str]

    @property
    def seconds(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


def chapter_dir(root: Path, split: str, speaker: int, chapter: int) -> Path:
    return root / "LibriSpeech" / split / str(speaker) / str(chapter)


def utterance_id(speaker: int, chapter: int, index: int) -> str:
    return f"{speaker}-{chapter}-{index:04d}"


def alignment_line(utt_id: str, phones: list[tuple[str, float, float]]) -> str:
    return " ".join([utt_id] + [f"{p}:{start:.3f}:{end:.3f}" for p, start, end in phones])


def write_chapter(directory: Path, speaker: int, chapter: int, utterances: list[Utterance]) -> None:
    """FLAC (16 kHz mono PCM_16) per utterance, then the chapter's transcript and alignment files."""
    directory.mkdir(parents=True, exist_ok=True)
    for utt in utterances:
        sf.write(directory / f"{utt.id}.flac", utt.waveform, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    stem = directory / f"{speaker}-{chapter}"
    Path(f"{stem}.trans.txt").write_text("".join(f"{u.id} {u.transcript}\n" for u in utterances))
    Path(f"{stem}.align.txt").write_text("".join(alignment_line(u.id, u.phones) + "\n" for u in utterances))


def write_speakers_txt(path: Path, speakers: list[Speaker], minutes: dict[int, float]) -> None:
    """``SPEAKERS.TXT`` in LibriSpeech's pipe-separated format (NAME records the espeak voice)."""
    lines = [
        "; Synthetic speakers of the audiossl embedded corpus (espeak-ng voices).\n",
        "; Columns: speaker ID, sex (F/M), subset, minutes of audio in that subset, voice settings.\n",
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n",
    ]
    for spk in speakers:
        lines.append(f"{spk.id:<5}| {spk.sex} | {spk.split:<17}| {minutes.get(spk.id, 0.0):5.2f} | {spk.name}\n")
    path.write_text("".join(lines))


def parse_alignment_line(line: str) -> tuple[str, list[tuple[str, float, float]]]:
    """Inverse of ``alignment_line``; raises ValueError naming the bad token and the utterance."""
    utt_id, _, tokens = line.strip().partition(" ")
    return utt_id, parse_alignment(tokens, f"utterance {utt_id}")
