"""Transcribe audio files with a fine-tuned CTC model (``audiossl-transcribe``): text, word times, speed.

Inputs are audio files, directories (searched recursively for audio extensions) or fairseq ``.tsv``
manifests. Each file is read with ``read_audio`` (resampled and downmixed as the policy allows) and encoded
alone: no padding, so GroupNorm encoders (wav2vec 2.0 BASE) see exactly the utterance. Long files are encoded
in overlapping windows (``Chunking``) and decoded whole. A file that cannot
be read is skipped and reported with its fault, never a crash. Word times come from the CTC alignment of
the decoded text (``align.word_timings``). The real-time factor is wall time (reading, encoding, decoding,
alignment) over audio duration: below 1 is faster than real time.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from audiossl.audio.io import AudioPolicy, read_audio
from audiossl.data.batch import AudioBatch
from audiossl.data.manifest import read_tsv
from audiossl.asr.align import WordTiming, word_timings
from audiossl.downstream.ctc import CTCTask
from audiossl.progress import progress_bar, write_line

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3", ".opus")
Decoder = Callable[[Tensor, Tensor], list[str]]


@dataclass
class Transcript:
    path: str
    text: str
    seconds: float
    words: list[WordTiming] | None


@dataclass
class Skipped:
    path: str
    fault: str
    detail: str


@dataclass
class TranscriptionRun:
    """Every transcript and skipped file of one run, with its timing."""

    transcripts: list[Transcript] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")


@dataclass(frozen=True)
class Chunking:
    """How long files are encoded: in windows of ``seconds``, each read with ``context`` seconds of audio on
    both sides whose output frames are dropped, then decoded as one file.

    Self-attention's memory grows with the square of the length (a whole 10-minute file at 10 ms frames
    is 60,000 frames: tens of GB of attention weights per layer), so the windows keep the peak flat while
    each kept frame still sees ``context`` seconds around it. Windows start on the CTC output grid, so the
    frames concatenate to the whole file's grid. ``seconds = 0`` encodes every file whole. Frames differ
    from whole-file encoding only through what lies beyond the context (attention, per-utterance CMVN).
    """

    seconds: float = 30.0
    context: float = 2.0


def find_audio(inputs: list[str], extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """The files to transcribe, in a stable order: files as given (missing ones too, so they are reported),
    directories searched recursively, ``.tsv`` manifests read row by row."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in extensions and p.is_file())
        elif item.suffix == ".tsv" and item.is_file():
            root, rows = read_tsv(item)
            found += [root / row.relpath for row in rows]
        else:
            found.append(item)
    return found


def transcribe_file(task: CTCTask, decoder: Decoder, path: Path, policy: AudioPolicy, device: str = "cpu",
                    chunking: Chunking = Chunking()) -> Transcript | Skipped:
    """One file: read, encode alone (in windows when long), decode, align the words."""
    result = read_audio(str(path), policy)
    if result.waveform is None:
        return Skipped(str(path), result.fault or "unreadable", result.detail)
    waveform = result.waveform
    log_probs = file_log_probs(task, waveform, policy.sample_rate, chunking, device)
    if len(log_probs) == 0:
        return Skipped(str(path), "too_short", f"{len(waveform)} samples make no encoder frame")
    text = decoder(log_probs[None], torch.tensor([len(log_probs)]))[0]
    words = word_timings(text, log_probs, task.vocab, task.output_grid(policy.sample_rate))
    return Transcript(str(path), text, len(waveform) / policy.sample_rate, words)


def file_log_probs(task: CTCTask, waveform: Tensor, sample_rate: int, chunking: Chunking,
                   device: str = "cpu") -> Tensor:
    """``(frames, vocab)`` float32 CTC log-probabilities of one file on the CPU, whole or window by window."""
    stride = task.output_grid(sample_rate).stride
    step = int(chunking.seconds * sample_rate) // stride * stride
    context = math.ceil(chunking.context * sample_rate / stride) * stride
    if step == 0 or len(waveform) <= step + context:
        return _log_probs(task, waveform, sample_rate, device)
    pieces = []
    for start in range(0, len(waveform), step):
        left = max(0, start - context)
        window = _log_probs(task, waveform[left : start + step + context], sample_rate, device)
        end = start + step
        pieces.append(window[(start - left) // stride : (end - left) // stride if end < len(waveform) else None])
    return torch.cat(pieces)


def _log_probs(task: CTCTask, waveform: Tensor, sample_rate: int, device: str) -> Tensor:
    batch = AudioBatch(waveform[None], torch.tensor([len(waveform)]), ["file"], sample_rate=sample_rate)
    with torch.no_grad():
        log_probs, lengths = task.log_probs(batch.to(device))
    return log_probs[0, : int(lengths[0])].float().cpu()


def transcribe(task: CTCTask, decoder: Decoder, paths: list[Path], policy: AudioPolicy, device: str = "cpu",
               chunking: Chunking = Chunking()) -> TranscriptionRun:
    """Transcribe every path in eval mode; skipped files are named on stderr as they happen."""
    task.to(device).eval()
    run = TranscriptionRun()
    for path in progress_bar(paths, total=len(paths), desc="transcribe", unit="file"):
        start = time.perf_counter()
        outcome = transcribe_file(task, decoder, path, policy, device, chunking)
        if isinstance(outcome, Skipped):
            run.skipped.append(outcome)
            write_line(f"skipped {outcome.path}: {outcome.fault} ({outcome.detail})", sys.stderr)
            continue
        run.wall_seconds += time.perf_counter() - start
        run.audio_seconds += outcome.seconds
        run.transcripts.append(outcome)
    return run


def write_outputs(run: TranscriptionRun, out_dir: str | Path, info: dict[str, object]) -> tuple[Path, Path]:
    """``transcripts.txt`` (``path<TAB>text`` per file) and ``transcripts.json`` (words with times, skipped
    files, speed, and ``info``: model and decoder)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path, json_path = out_dir / "transcripts.txt", out_dir / "transcripts.json"
    text_path.write_text("".join(f"{t.path}\t{t.text}\n" for t in run.transcripts), encoding="utf-8")
    document = {**info, "audio_seconds": round(run.audio_seconds, 3), "wall_seconds": round(run.wall_seconds, 3),
                "real_time_factor": round(run.real_time_factor, 4) if run.audio_seconds else None,
                "transcripts": [asdict(t) for t in run.transcripts], "skipped": [asdict(s) for s in run.skipped]}
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return text_path, json_path
