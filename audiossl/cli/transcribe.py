"""``audiossl-transcribe``: a fine-tuned CTC model over audio files, directories or manifests.

    audiossl-transcribe model=runs/asr_10min inputs=[recordings/] out_dir=transcripts
    audiossl-transcribe model=hf/wav2vec2-base-960h inputs=[a.flac,b.wav] decoder=lm lm.arpa=4-gram.arpa
    audiossl-transcribe model=wav2vec_small_960h.pt dict_path=dict.ltr.txt inputs=[manifests/libri/test_clean.tsv]

``model`` is an audiossl fine-tuning run or checkpoint (ASR or phoneme CTC) or a peer's CTC checkpoint (HF
``Wav2Vec2ForCTC`` / ``HubertForCTC`` directory, fine-tuned fairseq ``.pt`` with its ``dict.ltr.txt``,
fairseq2 ASR checkpoint, our torchaudio file). Files longer than ``chunk_seconds`` are encoded in windows
with ``chunk_context_seconds`` of audio on each side (memory stays flat on hour-long recordings) and decoded
as one file. Writes ``transcripts.txt`` and ``transcripts.json`` (word
start/end times from the CTC alignment) and prints the real-time factor. Files that cannot be read are
skipped and named. The logic is in ``audiossl.downstream.transcribe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiossl.audio.io import AudioPolicy
from audiossl.cli._hydra import hydra_app
from audiossl.config import ConfigError, check_choice, check_positive, to_config
from audiossl.data.manifest import ManifestError
from audiossl.asr.decode import BeamSettings, GreedyDecoder, LMBeamDecoder, write_lexicon
from audiossl.downstream.peer_ctc import load_any_finetuned
from audiossl.asr.lm import arpa_vocabulary, text_arpa
from audiossl.downstream.ctc import CTCTask
from audiossl.downstream.transcribe import Chunking, Decoder, find_audio, transcribe, write_outputs
from audiossl.models.interop import InteropError

DECODERS = ("greedy", "lm")


@dataclass
class TranscribeLMConfig:
    """The word n-gram of ``decoder=lm``: an ARPA file, or one built from ``text`` (a sentence per line)."""

    arpa: str | None = None
    lexicon: str | None = None
    text: str | None = None
    order: int = 3
    beam_size: int = 50
    beam_threshold: float = 25.0
    lm_weight: float = 2.0
    word_score: float = 0.0


@dataclass
class TranscribeConfig:
    """``conf/transcribe.yaml``; audio at another rate or with several channels is converted by default."""

    model: str | None = None
    inputs: list[str] = field(default_factory=list)
    dict_path: str | None = None
    out_dir: str = "transcripts"
    decoder: str = "greedy"
    sample_rate: int = 16_000
    resample: bool = True
    downmix: bool = True
    device: str = "cpu"
    num_threads: int = 1
    chunk_seconds: float = 30.0
    chunk_context_seconds: float = 2.0
    lm: TranscribeLMConfig = field(default_factory=TranscribeLMConfig)

    def validate(self) -> TranscribeConfig:
        check_choice(self.decoder, DECODERS, "decoder")
        if not self.model:
            raise ConfigError("invalid config at 'model': name a fine-tuned run, checkpoint or peer CTC model")
        if not self.inputs:
            raise ConfigError("invalid config at 'inputs': give audio files, directories or .tsv manifests")
        check_positive(self.chunk_seconds, "chunk_seconds", allow_zero=True)
        check_positive(self.chunk_context_seconds, "chunk_context_seconds", allow_zero=True)
        if self.decoder == "lm" and not (self.lm.arpa or self.lm.text):
            raise ConfigError("invalid config at 'lm.arpa': decoder=lm needs lm.arpa (or lm.text to build one)")
        return self


def load_model(cfg: TranscribeConfig) -> CTCTask:
    try:
        task, _, _ = load_any_finetuned(cfg.model, cfg.dict_path)
    except (FileNotFoundError, InteropError) as error:
        raise ConfigError(f"invalid config at 'model': {error}") from None
    if not isinstance(task, CTCTask):
        raise ConfigError(f"invalid config at 'model': {cfg.model} is a {type(task).__name__}, not a CTC model")
    return task


def lm_decoder(task: CTCTask, lm: TranscribeLMConfig, out_dir: Path) -> LMBeamDecoder:
    """Beam search with the word n-gram; the lexicon spells every ARPA word the model can emit."""
    for key in ("arpa", "lexicon", "text"):
        value = getattr(lm, key)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"invalid config at 'lm.{key}': {value} does not exist")
    arpa = Path(lm.arpa) if lm.arpa else text_arpa(lm.text, lm.order, out_dir / "lm")
    lexicon = (Path(lm.lexicon) if lm.lexicon
               else write_lexicon(arpa_vocabulary(arpa), out_dir / "lm" / "lexicon.txt", vocab=task.vocab))
    settings = BeamSettings(beam_size=lm.beam_size, beam_threshold=lm.beam_threshold, lm_weight=lm.lm_weight,
                            word_score=lm.word_score)
    try:
        return LMBeamDecoder(task.vocab, arpa, lexicon, settings)
    except ValueError as error:
        raise ConfigError(f"invalid config at 'decoder': {error}") from None


@hydra_app("transcribe")
def main(node: Any) -> None:
    cfg = to_config(TranscribeConfig, node, "transcribe")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    task = load_model(cfg)
    out_dir = Path(cfg.out_dir)
    decoder: Decoder = GreedyDecoder(task.vocab) if cfg.decoder == "greedy" else lm_decoder(task, cfg.lm, out_dir)
    try:
        paths = find_audio(cfg.inputs)
    except ManifestError as error:
        raise ConfigError(f"invalid config at 'inputs': {error}") from None
    policy = AudioPolicy(cfg.sample_rate, resample=cfg.resample, downmix=cfg.downmix)
    run = transcribe(task, decoder, paths, policy, cfg.device, Chunking(cfg.chunk_seconds, cfg.chunk_context_seconds))
    for transcript in run.transcripts:
        print(f"{transcript.path}\t{transcript.text}")
    text_path, json_path = write_outputs(run, out_dir, {"model": cfg.model, "decoder": cfg.decoder})
    print(f"{len(run.transcripts)} files transcribed, {len(run.skipped)} skipped -> {text_path}, {json_path}")
    if run.audio_seconds:
        print(f"{run.audio_seconds:.1f} s of audio in {run.wall_seconds:.2f} s: real-time factor "
              f"{run.real_time_factor:.3f} ({1 / run.real_time_factor:.0f}x faster than real time)")


if __name__ == "__main__":
    main()
